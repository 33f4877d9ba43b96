/**
 * The conformance suite twice: against the machine's Mosquitto (BUSBAR_TEST_MQTT_URL, default :1883, its stock
 * configuration), and against a private Mosquitto this file starts with persistence on, its own port and data dir,
 * so that scenario 13 restarts a broker no one else is using.
 */
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { endMqttGroupSessions } from '../helpers/group-cleanup.ts';
import { PrivateMosquitto } from '../transports/mqtt-broker.ts';
import { runConformance } from './suite.ts';

/** Sessions of the suite's consumers expire 10 minutes after they leave, instead of a week, on a shared broker. */
const shortSessions = (url: string) => `${url}${url.includes('?') ? '&' : '?'}sessionExpirySec=600`;

runConformance({
  name: 'mqtt',
  connect: () => shortSessions(BROKERS.mqtt),
  check: async () => {
    const { host, port } = hostPort(BROKERS.mqtt, 1883);
    await tcpReachable(host, port);
  },
  // The suite deletes its types; the group members' sessions (and their records) are ended here.
  cleanup: ({ groups }) => endMqttGroupSessions(shortSessions(BROKERS.mqtt), groups),
});

let broker: PrivateMosquitto | undefined;
runConformance({
  name: 'mqtt',
  variant: 'private mosquitto, restarted',
  connect: () => broker!.url,
  check: async () => PrivateMosquitto.check(),
  before: async () => {
    broker = await PrivateMosquitto.start();
  },
  after: async () => {
    await broker?.stop();
  },
  restart: async () => broker!.restart(),
});

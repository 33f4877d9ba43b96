/** Moved to src/transport/cloudevents.ts (transports depend only on src/transport/); kept for the layers above. */
export * from '../transport/cloudevents.ts';

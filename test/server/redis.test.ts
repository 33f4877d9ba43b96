import { REDIS } from './helpers.ts';
import { gatewayScenarios } from './scenarios.ts';

gatewayScenarios(REDIS);

import { EMBEDDED } from './helpers.ts';
import { gatewayScenarios } from './scenarios.ts';

gatewayScenarios(EMBEDDED);

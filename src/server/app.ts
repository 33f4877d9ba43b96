/**
 * The Fastify application: limits, JSON errors for every failure (Fastify's own, the socket's, the broker's),
 * bearer-token auth, metrics, and the routes.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerOptions,
} from 'fastify';
import { authorize } from './auth.ts';
import { httpError, rawErrorResponse, sendError } from './errors.ts';
import type { Gateway } from './gateway.ts';
import { RouteMethods } from './methods.ts';
import { ApiRegistry, type RouteSpec } from './openapi.ts';
import { type AjvError, formatValidation, parseQuery, principalOf, setPrincipal } from './requests.ts';
import { registerAdminRoutes } from './routes/admin.ts';
import { registerConsoleRoutes } from './routes/console.ts';
import { registerCortxPublish, registerCortxRoutes } from './routes/cortx.ts';
import { registerDeadLetterRoutes } from './routes/dead-letters.ts';
import { registerOpsRoutes } from './routes/ops.ts';
import { registerPeekRoutes } from './routes/peek.ts';
import { registerPublishRoutes } from './routes/publish.ts';
import { registerPullRoutes } from './routes/pull.ts';
import { registerReplicaRoutes } from './routes/replicas.ts';
import { registerStreamRoutes } from './routes/stream.ts';

function onClientError(error: NodeJS.ErrnoException, socket: Socket, headerBytes: number): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const response =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? rawErrorResponse(
          431,
          'BUSBAR_ERR_PAYLOAD_TOO_LARGE',
          `request line and headers exceed ${headerBytes} bytes: send fewer or smaller headers`,
        )
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? rawErrorResponse(408, 'BUSBAR_ERR_TIMEOUT', 'the request was not received in time: send it again')
        : rawErrorResponse(400, 'BUSBAR_ERR_INVALID_ARGUMENT', 'malformed HTTP request');
  if (socket.writable) socket.write(response);
  socket.destroy();
}

/** Maps Fastify's own errors (validation, body limits, content types, JSON syntax) onto busbar codes. */
function translate(error: FastifyError, gw: Gateway): unknown {
  if (error.validation) {
    return httpError('BUSBAR_ERR_INVALID_ARGUMENT', `${error.message}: see /openapi.json for what is accepted`);
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return httpError(
        'BUSBAR_ERR_PAYLOAD_TOO_LARGE',
        `request body exceeds the limit of ${gw.settings.limits.bodyBytes} bytes: split it into smaller batches`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return httpError(
        'BUSBAR_ERR_UNSUPPORTED_MEDIA_TYPE',
        'unsupported Content-Type: send application/json (a publish takes any content type)',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return httpError('BUSBAR_ERR_INVALID_ARGUMENT', 'the JSON body is empty: send a JSON object');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return httpError('BUSBAR_ERR_INVALID_ARGUMENT', `the body is not valid JSON: ${error.message}`);
  }
  if (error instanceof SyntaxError || error.statusCode === 400) {
    return httpError('BUSBAR_ERR_INVALID_ARGUMENT', `bad request: ${error.message}`);
  }
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return httpError('BUSBAR_ERR_INVALID_ARGUMENT', `bad request: ${error.message}`, { status: error.statusCode });
  }
  return error;
}

export interface AppOptions {
  logger?: FastifyServerOptions['logger'];
}

export async function buildApp(gw: Gateway, options: AppOptions = {}): Promise<FastifyInstance> {
  const { limits, tls } = gw.settings;
  const https = tls
    ? {
        cert: readFileSync(tls.cert),
        key: readFileSync(tls.key),
        ...(tls.ca ? { ca: readFileSync(tls.ca) } : {}),
        maxHeaderSize: limits.headerBytes,
      }
    : null;
  const common: FastifyServerOptions = {
    logger: options.logger ?? false,
    bodyLimit: limits.bodyBytes,
    return503OnClosing: false,
    // No type coercion: a body with a wrong type is an error, never silently converted. Query values are typed by
    // parseQuery instead, by name.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true } },
    routerOptions: { maxParamLength: 512, querystringParser: parseQuery },
    schemaErrorFormatter: (errors, where) => new Error(formatValidation(errors as AjvError[], where)),
    // Errors Fastify raises before routing (an undecodable URL) get the same JSON shape.
    frameworkErrors: (error: FastifyError, _request: unknown, reply: FastifyReply) =>
      sendError(reply, httpError('BUSBAR_ERR_INVALID_ARGUMENT', `bad request: ${error.message}`)),
    clientErrorHandler(error, socket) {
      onClientError(error as NodeJS.ErrnoException, socket as Socket, limits.headerBytes);
    },
  };
  // Fastify's types split http and https options into overloads; the instance is the same either way.
  const create = Fastify as unknown as (options: object) => FastifyInstance;
  const app = create(https ? { ...common, https } : { ...common, http: { maxHeaderSize: limits.headerBytes } });

  app.setErrorHandler((error: FastifyError, _request, reply) => sendError(reply, translate(error, gw)));
  const routes = new RouteMethods(app);
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allowed = routes.allowed(path);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return sendError(
        reply,
        httpError(
          'BUSBAR_ERR_METHOD_NOT_ALLOWED',
          `${request.method} is not allowed on ${path}: use ${allowed.join(', ')}`,
        ),
      );
    }
    return sendError(
      reply,
      httpError('BUSBAR_ERR_NOT_FOUND', `no route ${request.method} ${path}: see /openapi.json for the routes`),
    );
  });

  app.addHook('onRequest', async (request) => {
    const auth = (request.routeOptions.config as { auth?: RouteSpec['auth'] }).auth;
    if (gw.closing && auth !== 'public' && !gw.servesWhileDraining(request.routeOptions.url)) {
      throw httpError('BUSBAR_ERR_CLOSED', 'the gateway is shutting down: retry once it is back');
    }
    if (auth === 'public') return;
    setPrincipal(request, gw.auth.authenticate(request));
  });

  // Type-scoped routes check the scope once the path is validated.
  app.addHook('preHandler', async (request) => {
    const auth = (request.routeOptions.config as { auth?: RouteSpec['auth'] }).auth;
    const type = (request.params as { type?: string } | undefined)?.type;
    if ((auth === 'publish' || auth === 'consume' || auth === 'admin') && type !== undefined) {
      authorize(principalOf(request), auth, type);
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    gw.metrics.httpAnswer(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode);
  });

  const api = new ApiRegistry();
  // Publish bodies are read raw: a single message keeps its exact bytes and any content type.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    registerPublishRoutes(scope, gw, api);
    registerCortxPublish(scope, gw, api);
  });
  registerPullRoutes(app, gw, api);
  registerStreamRoutes(app, gw, api);
  registerAdminRoutes(app, gw, api);
  registerCortxRoutes(app, gw, api);
  registerOpsRoutes(app, gw, api);
  registerDeadLetterRoutes(app, gw, api);
  registerPeekRoutes(app, gw, api);
  registerConsoleRoutes(app, gw);
  registerReplicaRoutes(app, gw, api);
  return app;
}

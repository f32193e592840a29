// The typescript-sdk subject: the official MCP TypeScript SDK's client, driven by freshtoken's
// command protocol (version 2). Run by freshtoken as `node client.mjs <sdk-dir>`, one process
// per scenario, where <sdk-dir> is the installed @modelcontextprotocol/sdk package.
//
// Directly, the SDK manages its own tokens through an OAuthClientProvider whose storage holds the
// scenario's seeded grant (access and refresh token, expiry, scope) and its registered client;
// through the proxy (FRESHTOKEN_VIA_PROXY=1) it holds no token. The client is unattended, as an
// agent is: when the SDK asks for an interactive login (redirectToAuthorization), the request is
// recorded as a `login.requested` client event and nobody completes it.
//
// This file maps each step onto the SDK's public API and nothing more: whatever the SDK does with
// a 401, a token endpoint error or a lost session is the SDK's own behaviour.

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';

const env = process.env;

// Node reads extra CA certificates only at start-up: a TLS scenario runs this file again with them.
if (env.FRESHTOKEN_CA_FILE && env.NODE_EXTRA_CA_CERTS !== env.FRESHTOKEN_CA_FILE) {
  const child = spawn(process.execPath, process.argv.slice(1), {
    env: { ...env, NODE_EXTRA_CA_CERTS: env.FRESHTOKEN_CA_FILE },
    stdio: 'inherit',
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  await main();
}

async function main() {
  const sdkRoot = process.argv[2];
  const sdk = (path) => import(pathToFileURL(join(sdkRoot, 'dist', 'esm', path)).href);
  const { Client } = await sdk('client/index.js');
  const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
  const { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } =
    await sdk('types.js');
  const { version } = JSON.parse(await readFile(join(sdkRoot, 'package.json'), 'utf8'));

  const CONTROL = env.FRESHTOKEN_CONTROL_URL;
  const TIMEOUT = Number(env.FRESHTOKEN_STEP_TIMEOUT) * 1000;
  const VIA_PROXY = env.FRESHTOKEN_VIA_PROXY === '1';
  // Never visited: an unattended client has no browser to come back to it.
  const REDIRECT_URL = 'http://127.0.0.1/callback';

  async function control(path, body) {
    const response = await fetch(`${CONTROL}${path}`, {
      method: 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      throw new Error(`${path}: ${response.status} ${await response.text()}`);
    }
    return response.json();
  }

  const event = (kind, step, detail = {}) =>
    control('/event', step === undefined ? { event: kind, detail } : { event: kind, step, detail });

  /** The SDK's OAuthClientProvider, its storage holding what an earlier login left behind. */
  class SeededProvider {
    constructor() {
      const expiresIn = env.FRESHTOKEN_EXPIRES_IN;
      this.stored = {
        access_token: env.FRESHTOKEN_ACCESS_TOKEN,
        token_type: 'Bearer',
        ...(env.FRESHTOKEN_REFRESH_TOKEN ? { refresh_token: env.FRESHTOKEN_REFRESH_TOKEN } : {}),
        ...(expiresIn === undefined ? {} : { expires_in: Math.max(Math.floor(Number(expiresIn)), 0) }),
        ...(env.FRESHTOKEN_SCOPE ? { scope: env.FRESHTOKEN_SCOPE } : {}),
        issuer: env.FRESHTOKEN_ISSUER,
      };
      this.client = {
        client_id: env.FRESHTOKEN_CLIENT_ID,
        client_secret: env.FRESHTOKEN_CLIENT_SECRET,
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: [REDIRECT_URL],
        issuer: env.FRESHTOKEN_ISSUER,
      };
      this.verifier = undefined;
    }
    get redirectUrl() {
      return REDIRECT_URL;
    }
    get clientMetadata() {
      return {
        client_name: 'freshtoken typescript-sdk subject',
        redirect_uris: [REDIRECT_URL],
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'client_secret_basic',
        ...(env.FRESHTOKEN_SCOPE ? { scope: env.FRESHTOKEN_SCOPE } : {}),
      };
    }
    clientInformation() {
      return this.client;
    }
    saveClientInformation(info) {
      this.client = info;
    }
    tokens() {
      return this.stored;
    }
    saveTokens(tokens) {
      this.stored = tokens;
    }
    async redirectToAuthorization() {
      await event('login.requested', undefined, { via: 'redirectToAuthorization' });
    }
    saveCodeVerifier(verifier) {
      this.verifier = verifier;
    }
    codeVerifier() {
      if (this.verifier === undefined) throw new Error('no code verifier saved');
      return this.verifier;
    }
    invalidateCredentials(scope) {
      if (scope === 'all' || scope === 'tokens') this.stored = undefined;
      if (scope === 'all' || scope === 'client') this.client = undefined;
      if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
    }
  }

  let callHeaders = {}; // a call's Origin/Host
  let lastStatus = null; // the last tools/call response's HTTP status

  // The transport's fetch: adds a call's own headers, and notes the status a tools/call got.
  async function observingFetch(url, init = {}) {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(callHeaders)) headers.set(name, value);
    const send = headers.has('host') ? fetchWithHost : fetch;
    const response = await send(url, { ...init, headers });
    if (init.method === 'POST' && typeof init.body === 'string' && init.body.includes('"tools/call"')) {
      lastStatus = response.status;
    }
    return response;
  }

  // Node's fetch always sends the URL's own Host: a call that names another goes out over node:http.
  function fetchWithHost(url, init) {
    return new Promise((resolve, reject) => {
      const target = new URL(url);
      const request = (target.protocol === 'https:' ? https : http).request(
        target,
        { method: init.method, headers: Object.fromEntries(init.headers), signal: init.signal },
        (res) => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value !== undefined) headers.set(name, [value].flat().join(', '));
          }
          const empty = res.statusCode === 204 || res.statusCode === 304;
          resolve(new Response(empty ? null : Readable.toWeb(res), { status: res.statusCode, headers }));
        },
      );
      request.on('error', reject);
      request.end(init.body);
    });
  }

  const transport = new StreamableHTTPClientTransport(new URL(env.FRESHTOKEN_MCP_URL), {
    authProvider: VIA_PROXY ? undefined : new SeededProvider(),
    fetch: observingFetch,
  });
  transport.onerror = (error) => console.log(`transport error: ${error?.message ?? error}`);
  const client = new Client(
    { name: 'freshtoken-typescript-sdk-subject', version },
    { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    role: 'assistant',
    content: { type: 'text', text: 'freshtoken' },
    model: 'typescript-sdk-subject',
  }));
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [] }));

  let connected = false;
  const abandoned = new Set(); // steps given up at a disconnect, already reported
  const report = (index, body) => control(`/result/${index}`, body);

  async function call(step, tool, args) {
    const index = step.index;
    const progress = [];
    callHeaders = Object.fromEntries(
      ['origin', 'host'].filter((k) => step[k]).map((k) => [k, step[k]]),
    );
    let body;
    try {
      if (!connected) throw new Error('no session: initialize failed');
      const result = await client.callTool({ name: tool, arguments: args }, undefined, {
        timeout: TIMEOUT,
        onprogress: (p) => {
          progress.push(p.progress);
          event('sse.event', index).catch(() => {});
        },
      });
      body = { ok: !result.isError, status: 200, progress };
    } catch (error) {
      body = { ok: false, status: lastStatus, progress, error: String(error?.message ?? error) };
    } finally {
      callHeaders = {};
    }
    if (!abandoned.has(index)) await report(index, body);
  }

  await event('sdk', undefined, { package: '@modelcontextprotocol/sdk', version, via_proxy: VIA_PROXY });
  const steps = JSON.parse(await readFile(env.FRESHTOKEN_STEPS, 'utf8')).steps;
  const background = new Map(); // index → the call, while it runs
  const inBackground = (index, promise) =>
    background.set(index, promise.finally(() => background.delete(index)));
  try {
    for (const step of steps) {
      const { step: kind, index } = step;
      if (step.by === 'runner') {
        await control(`/step/${index}`);
      } else if (kind === 'initialize') {
        try {
          await client.connect(transport, { timeout: TIMEOUT });
          connected = true;
        } catch (error) {
          console.log(`initialize failed: ${error?.message ?? error}`);
        }
      } else if (kind === 'call' && step.background) {
        inBackground(index, call(step, step.tool, step.arguments));
      } else if (kind === 'call') {
        await call(step, step.tool, step.arguments);
      } else if (kind === 'stream') {
        inBackground(index, call(step, 'stream', { count: step.count, pace: step.pace }));
      } else if (kind === 'burst') {
        await Promise.all(Array.from({ length: step.n }, () => call(step, step.tool, step.arguments)));
      } else if (kind === 'disconnect') {
        // The SDK cannot abandon one call: closing the connection gives up every one in flight.
        const pending = [...background.keys()];
        for (const i of pending) abandoned.add(i);
        await client.close();
        connected = false;
        for (const i of pending) await report(i, { ok: false, abandoned: true });
      }
      // open_get_stream and resume: the SDK opens its GET stream after initializing, and resumes
      // a cut stream, by itself.
    }
    await Promise.allSettled(background.values());
  } finally {
    await client.close().catch(() => {});
  }
}

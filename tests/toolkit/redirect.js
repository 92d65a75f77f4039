// Preloaded (`node --require ./redirect.js`) before Tencent's toolkit: every HTTPS request it
// makes to a Tencent Cloud endpoint goes, as plain HTTP, to the stand-in at
// ESGFLOW_DEPLOY_ENDPOINT, keeping the Host header the request was signed for; a request to any
// other host is refused, so nothing here reaches the internet.
'use strict';
const http = require('http');
const https = require('https');

const endpoint = process.env.ESGFLOW_DEPLOY_ENDPOINT;
if (!endpoint || !/^http:\/\/127\.0\.0\.1:\d+\/?$/.test(endpoint)) {
  throw new Error(
    `ESGFLOW_DEPLOY_ENDPOINT must be a local stand-in (http://127.0.0.1:<port>), not ${endpoint}`,
  );
}
const target = new URL(endpoint);
const TENCENT = /(^|\.)(tencentcloudapi\.com|tencentcs\.com|myqcloud\.com|tencentcos\.cn)$/;

// One options object from the three ways Node's request() is called.
function normalize(args) {
  let [first, second, third] = args;
  let options = {};
  let callback;
  if (typeof first === 'string' || first instanceof URL) {
    const url = new URL(first);
    options = { hostname: url.hostname, port: url.port, path: url.pathname + url.search };
    if (typeof second === 'function') {
      callback = second;
    } else {
      options = Object.assign(options, second);
      callback = third;
    }
  } else {
    options = Object.assign({}, first);
    callback = second;
  }
  return [options, callback];
}

function redirected(args) {
  const [options, callback] = normalize(args);
  const host = options.hostname || String(options.host || '').replace(/:\d+$/, '');
  if (!TENCENT.test(host)) {
    throw new Error(`refused: ${host} is not a Tencent Cloud endpoint (no network here)`);
  }
  const headers = Object.assign({}, options.headers);
  if (!Object.keys(headers).some((name) => name.toLowerCase() === 'host')) {
    headers.host = host;
  }
  const local = {
    method: options.method || 'GET',
    path: options.path || '/',
    headers,
    protocol: 'http:',
    hostname: target.hostname,
    port: target.port,
    timeout: 30000,
  };
  return [local, callback];
}

https.request = (...args) => {
  const [options, callback] = redirected(args);
  return http.request(options, callback);
};
https.get = (...args) => {
  const request = https.request(...args);
  request.end();
  return request;
};
const plain = http.request;
http.request = (...args) => {
  const [options] = normalize(args);
  const host = options.hostname || String(options.host || '').replace(/:\d+$/, '');
  if (host !== target.hostname) {
    throw new Error(`refused: http://${host} (no network here)`);
  }
  return plain(...args);
};

// Preloaded into Node emulators that listen on every interface: a listen() without a host, or
// on a wildcard host, is moved to 127.0.0.1 (or EMU_BIND_HOST), so nothing leaves loopback.
'use strict';
const net = require('net');
const host = process.env.EMU_BIND_HOST || '127.0.0.1';
const wildcard = (h) => h === undefined || h === null || h === '' || h === '0.0.0.0' || h === '::';
const isPort = (p) => typeof p === 'number' || (typeof p === 'string' && /^\d+$/.test(p));
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] !== null && typeof args[0] === 'object' && !Array.isArray(args[0]) && !args[0].path) {
    if (wildcard(args[0].host)) args[0] = Object.assign({}, args[0], { host });
  } else if (isPort(args[0])) {
    if (typeof args[1] === 'string') {
      if (wildcard(args[1])) args[1] = host;
    } else {
      args.splice(1, 0, host);
    }
  }
  return listen.apply(this, args);
};

// Preloaded into Ganymede by its unit (NODE_OPTIONS=--require=...). Ganymede listens with
// app.listen(port): every interface, whatever host GANYMEDE_SERVER_BIND names (platform
// contract 1.7). This gives every TCP listener of the process the host 127.0.0.1, so only
// nginx on this host reaches it. Unix sockets and listeners on a handle are left alone.
// Installed by holistix-deploy's ganymede module (files/ganymede/loopback_listen.cjs).
'use strict';

const net = require('node:net');

const LOOPBACK = '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const [first] = args;
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === 'string') args[1] = LOOPBACK;
    else args.splice(1, 0, LOOPBACK);
  } else if (first && typeof first === 'object' && first.port !== undefined && first.path === undefined) {
    args[0] = { ...first, host: LOOPBACK };
  } else if (first === undefined || typeof first === 'function') {
    args.unshift(0, LOOPBACK); // listen(): a random port, on loopback
  }
  return listen.apply(this, args);
};

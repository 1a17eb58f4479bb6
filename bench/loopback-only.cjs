// Preloaded (`node --require`) into a peer gateway that listens on all interfaces by default
// (Portkey's start-server): forces every server socket onto 127.0.0.1.
'use strict'
const net = require('node:net')

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (args[0] !== null && typeof args[0] === 'object' && !Array.isArray(args[0])) {
    args[0] = { ...args[0], host: '127.0.0.1' }
  } else if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] === 'string' || (args.length > 1 && (args[1] === undefined || args[1] === null))) args[1] = '127.0.0.1'
    else args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}

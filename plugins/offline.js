'use strict';

// What runs differently under serverless-offline. The sweeper's schedule (serverless.yml:
// rate(1 minute)) is make offline's own: scripts/local_stack.py invokes the sweeper every sweep
// bucket (SWEEP_BUCKET_SECONDS: a minute by default, 5 s in the end-to-end tests), which a
// schedule cannot express. serverless-offline 14 runs schedule events too, so the sweeper ran
// twice a minute, the two runs side by side, where AWS (reserved concurrency 1) runs one at a
// time. Offline, before serverless-offline reads the functions' events, this takes the schedule
// events out; nothing else (sls package, sls deploy) runs these hooks.
class Offline {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'before:offline:start:init': () => withoutSchedules(this.serverless.service.functions),
      'before:offline:start': () => withoutSchedules(this.serverless.service.functions),
    };
  }
}

function withoutSchedules(functions) {
  for (const definition of Object.values(functions || {})) {
    definition.events = (definition.events || []).filter((event) => !event.schedule);
  }
}

module.exports = Offline;

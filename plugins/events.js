'use strict';

// Events out (docs/events.md), shaped by two parameters before anything is compiled:
// - --param events=off: no bus, no stream, no events function, no PutEvents grant, and
//   EVENT_BUS_NAME empty (chat/events.py then sends nothing): the feature costs nothing.
// - --param eventBusName=<name>: send to that existing bus; the stack creates none, and the
//   grant names that bus's ARN.
// serverless.yml declares the whole feature (EventBus, the events function and its stream
// event, the HistoryTable stream, the dead-letter queue and its alarm, the grant); this plugin
// only takes away or redirects, so the template read in serverless.yml is the default one.
const EVENT_RESOURCES = ['EventBus', 'EventsDeadLetterQueue', 'EventsDeadLetterAlarm'];
const FUNCTION = 'publishEvents';

class Events {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      initialize: () => this.shape(),
    };
  }

  shape() {
    const service = this.serverless.service;
    const settings = (service.custom || {}).events || {};
    const enabled = String(settings.enabled === undefined ? 'on' : settings.enabled).toLowerCase();
    if (!['on', 'off'].includes(enabled)) {
      throw new this.serverless.classes.Error(`--param events must be on or off, not "${settings.enabled}"`);
    }
    const resources = (service.resources || {}).Resources || {};
    const statements = (((service.provider.iam || {}).role || {}).statements) || [];
    const grant = statements.findIndex((statement) => [].concat(statement.Action).includes('events:PutEvents'));
    if (enabled === 'off') {
      for (const id of EVENT_RESOURCES) delete resources[id];
      if (resources.HistoryTable) delete resources.HistoryTable.Properties.StreamSpecification;
      delete service.functions[FUNCTION];
      if (grant >= 0) statements.splice(grant, 1);
      service.provider.environment.EVENT_BUS_NAME = '';
      return;
    }
    const busName = settings.busName;
    if (busName) {
      if (!/^[\w.\-/]{1,256}$/.test(busName)) {
        throw new this.serverless.classes.Error(`--param eventBusName is not a bus name: "${busName}"`);
      }
      delete resources.EventBus;
      service.provider.environment.EVENT_BUS_NAME = busName;
      if (grant >= 0) {
        statements[grant].Resource = {
          'Fn::Join': [
            '',
            ['arn:', { Ref: 'AWS::Partition' }, ':events:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' },
              `:event-bus/${busName}`],
          ],
        };
      }
    }
  }
}

module.exports = Events;

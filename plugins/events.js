'use strict';

const fs = require('fs');
const path = require('path');
const { queueDepthAlarm } = require('./alarms.js');

// Events out (docs/events.md), shaped by two parameters before anything is compiled:
// - --param events=off: no bus, no stream, no events function, no PutEvents grant, and
//   EVENT_BUS_NAME empty (chat/events.py then sends nothing): the feature costs nothing.
// - --param eventBusName=<name>: send to that existing bus; the stack creates none, and the
//   grant names that bus's ARN.
// - --param webhookUrl=https://... (+ webhookSecretParameter, an SSM SecureString): every event is
//   POSTed there through an EventBridge API destination, with the key as the x-api-key header,
//   retried for 24 hours, then kept in a dead-letter queue with an alarm (webhookResources below).
// serverless.yml declares the whole feature (EventBus, the events function and its stream
// event, the HistoryTable stream, the dead-letter queue and its alarm, the grant); this plugin
// only takes away or redirects, so the template read in serverless.yml is the default one.
const EVENT_RESOURCES = ['EventBus', 'EventsDeadLetterQueue', 'EventsDeadLetterAlarm', 'EventsIteratorAgeAlarm'];
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
      if (settings.webhookUrl) throw new this.serverless.classes.Error('--param webhookUrl needs events on, not events=off');
      for (const id of EVENT_RESOURCES) delete resources[id];
      if (resources.HistoryTable) delete resources.HistoryTable.Properties.StreamSpecification;
      delete service.functions[FUNCTION];
      if (grant >= 0) statements.splice(grant, 1);
      service.provider.environment.EVENT_BUS_NAME = '';
      return;
    }
    const busName = settings.busName;
    if (settings.webhookUrl) {
      Object.assign(resources, webhookResources(this.serverless, settings, busName));
    } else if (settings.webhookSecretParameter) {
      throw new this.serverless.classes.Error('--param webhookSecretParameter needs --param webhookUrl');
    }
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

// EventBridge's limits: a target's retries last at most 24 hours and 185 attempts ("Event retry
// policy and using dead-letter queues", Amazon EventBridge User Guide).
const WEBHOOK_MAX_AGE_SECONDS = 86400;
const WEBHOOK_MAX_ATTEMPTS = 185;
const WEBHOOK_HEADER = 'x-api-key';

function arn(service, resource) {
  return {
    'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:${service}:`, { Ref: 'AWS::Region' }, ':',
      { Ref: 'AWS::AccountId' }, `:${resource}`]],
  };
}

function webhookResources(serverless, settings, busName) {
  const fail = (text) => { throw new serverless.classes.Error(text); };
  const url = String(settings.webhookUrl);
  if (!/^https:\/\/[^\s/]+(\/\S*)?$/.test(url)) fail(`--param webhookUrl must be an https:// URL, not "${url}"`);
  const parameter = String(settings.webhookSecretParameter || '');
  if (!/^\/[\w.\-/]+$/.test(parameter)) {
    fail('--param webhookUrl needs --param webhookSecretParameter=/name/of/a/SecureString (the API key it sends)');
  }
  const name = `${serverless.service.service}-${serverless.service.provider.stage}-webhook`;
  const code = fs.readFileSync(path.join(__dirname, 'webhook_connection.py'), 'utf8');
  const bus = busName || { Ref: 'EventBus' };
  const assume = (principal) => ({
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Principal: { Service: principal }, Action: 'sts:AssumeRole' }],
  });
  return {
    // The connection is made by a small function: it reads the SecureString and hands the key to
    // EventBridge, which keeps it in a Secrets Manager secret of its own (events!connection/...).
    WebhookConnectionRole: {
      Type: 'AWS::IAM::Role',
      Properties: {
        AssumeRolePolicyDocument: assume('lambda.amazonaws.com'),
        Policies: [{
          PolicyName: 'webhook-connection',
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              { Effect: 'Allow', Action: 'ssm:GetParameter', Resource: arn('ssm', `parameter${parameter}`) },
              {
                Effect: 'Allow',
                Action: ['events:CreateConnection', 'events:UpdateConnection', 'events:DeleteConnection'],
                // The connection's ARN is connection/<name>/<id>; CreateConnection is authorized
                // before the id exists, on connection/<name>.
                Resource: [arn('events', `connection/${name}`), arn('events', `connection/${name}/*`)],
              },
              {
                Effect: 'Allow',
                Action: ['secretsmanager:CreateSecret', 'secretsmanager:UpdateSecret', 'secretsmanager:DeleteSecret',
                  'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'secretsmanager:DescribeSecret'],
                Resource: arn('secretsmanager', 'secret:events!connection/*'),
              },
              {
                Effect: 'Allow',
                Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
                Resource: arn('logs', `log-group:/aws/lambda/${name}-connection:*`),
              },
            ],
          },
        }],
      },
    },
    WebhookConnectionLogGroup: {
      Type: 'AWS::Logs::LogGroup',
      Properties: { LogGroupName: `/aws/lambda/${name}-connection`, RetentionInDays: 14 },
    },
    WebhookConnectionFunction: {
      Type: 'AWS::Lambda::Function',
      DependsOn: ['WebhookConnectionLogGroup'],
      Properties: {
        FunctionName: `${name}-connection`,
        Runtime: 'python3.13',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Timeout: 60,
        Role: { 'Fn::GetAtt': ['WebhookConnectionRole', 'Arn'] },
        Code: { ZipFile: code },
      },
    },
    WebhookConnection: {
      Type: 'Custom::EventsConnection',
      Properties: {
        ServiceToken: { 'Fn::GetAtt': ['WebhookConnectionFunction', 'Arn'] },
        Name: name,
        ParameterName: parameter,
        HeaderName: WEBHOOK_HEADER,
        // CloudFormation sends an Update (the key read again) only when a property changes:
        // after changing the SecureString, deploy with a new --param webhookKeyVersion.
        KeyVersion: String(settings.webhookKeyVersion || '1'),
      },
    },
    WebhookDestination: {
      Type: 'AWS::Events::ApiDestination',
      Properties: {
        ConnectionArn: { 'Fn::GetAtt': ['WebhookConnection', 'Arn'] },
        InvocationEndpoint: url,
        HttpMethod: 'POST',
        InvocationRateLimitPerSecond: 20,
      },
    },
    WebhookTargetRole: {
      Type: 'AWS::IAM::Role',
      Properties: {
        AssumeRolePolicyDocument: assume('events.amazonaws.com'),
        Policies: [{
          PolicyName: 'webhook-target',
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [{
              Effect: 'Allow', Action: 'events:InvokeApiDestination',
              Resource: { 'Fn::GetAtt': ['WebhookDestination', 'Arn'] },
            }],
          },
        }],
      },
    },
    WebhookRule: {
      Type: 'AWS::Events::Rule',
      Properties: {
        Description: 'Every event of the chat service, to the webhook.',
        EventBusName: bus,
        EventPattern: { source: ['serverless-websocket'] },
        State: 'ENABLED',
        Targets: [{
          Id: 'webhook',
          Arn: { 'Fn::GetAtt': ['WebhookDestination', 'Arn'] },
          RoleArn: { 'Fn::GetAtt': ['WebhookTargetRole', 'Arn'] },
          RetryPolicy: { MaximumEventAgeInSeconds: WEBHOOK_MAX_AGE_SECONDS, MaximumRetryAttempts: WEBHOOK_MAX_ATTEMPTS },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': ['WebhookDeadLetterQueue', 'Arn'] } },
        }],
      },
    },
    WebhookDeadLetterQueue: {
      Type: 'AWS::SQS::Queue',
      Properties: {
        QueueName: `${serverless.service.service}-webhook-dlq-${serverless.service.provider.stage}`,
        MessageRetentionPeriod: 1209600,
        SqsManagedSseEnabled: true,
      },
    },
    // EventBridge may send to the dead-letter queue for this rule only.
    WebhookDeadLetterQueuePolicy: {
      Type: 'AWS::SQS::QueuePolicy',
      Properties: {
        Queues: [{ Ref: 'WebhookDeadLetterQueue' }],
        PolicyDocument: {
          Version: '2012-10-17',
          Statement: [{
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Action: 'sqs:SendMessage',
            Resource: { 'Fn::GetAtt': ['WebhookDeadLetterQueue', 'Arn'] },
            Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': ['WebhookRule', 'Arn'] } } },
          }],
        },
      },
    },
    WebhookDeadLetterAlarm: queueDepthAlarm(
      'WebhookDeadLetterQueue', 'Events the webhook did not take within 24 hours (the webhook dead-letter queue).'),
  };
}

module.exports = Events;

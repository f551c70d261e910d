'use strict';

// Two CloudWatch alarms over every function of this service, added to the compiled template:
// any Lambda error (an unhandled exception, a timeout) and any Lambda throttle (the account's
// or a function's concurrency used up) within 5 minutes. One metric math SUM over the
// functions' own metrics, so a function added to serverless.yml is covered without editing
// an alarm. They notify the AlarmTopic declared in serverless.yml, which e-mails
// custom.alarms.email when one is given (--param alarmEmail=...).
const PERIOD_SECONDS = 300;
// CloudWatch: an alarm's metric math may use at most 10 metrics (one is the SUM).
const MAX_FUNCTIONS = 9;

class Alarms {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:package:compileEvents': () => this.addFunctionAlarms(),
    };
  }

  get resources() {
    return this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
  }

  functionLogicalIds() {
    const naming = this.serverless.getProvider('aws').naming;
    return this.serverless.service.getAllFunctions().map((name) => naming.getLambdaLogicalId(name));
  }

  addFunctionAlarms() {
    const functions = this.functionLogicalIds();
    if (functions.length > MAX_FUNCTIONS) {
      throw new this.serverless.classes.Error(
        `scripts/alarms.js: ${functions.length} functions, but one alarm's metric math takes at most ${MAX_FUNCTIONS}`
      );
    }
    this.resources.FunctionErrorsAlarm = alarm('Errors', functions, 'Lambda functions failed (errors or timeouts).');
    this.resources.FunctionThrottlesAlarm = alarm('Throttles', functions, 'Lambda invocations were throttled.');
    const email = ((this.serverless.service.custom || {}).alarms || {}).email;
    if (email) {
      this.resources.AlarmEmailSubscription = {
        Type: 'AWS::SNS::Subscription',
        Properties: { TopicArn: { Ref: 'AlarmTopic' }, Protocol: 'email', Endpoint: email },
      };
    }
  }
}

function alarm(metricName, functions, description) {
  const metrics = functions.map((logicalId, index) => ({
    Id: `f${index}`,
    ReturnData: false,
    MetricStat: {
      Metric: {
        Namespace: 'AWS/Lambda',
        MetricName: metricName,
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId } }],
      },
      Period: PERIOD_SECONDS,
      Stat: 'Sum',
    },
  }));
  const ids = metrics.map((metric) => metric.Id).join(', ');
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmDescription: description,
      Metrics: [...metrics, { Id: 'total', Expression: `SUM([${ids}])`, Label: `${metricName} of all functions`, ReturnData: true }],
      EvaluationPeriods: 1,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      AlarmActions: [{ Ref: 'AlarmTopic' }],
      OKActions: [{ Ref: 'AlarmTopic' }],
    },
  };
}

module.exports = Alarms;

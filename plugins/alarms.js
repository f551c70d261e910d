'use strict';

// CloudWatch alarms over every function of this service, added to the compiled template: any
// Lambda error (an unhandled exception, a timeout) and any Lambda throttle (the account's or a
// function's concurrency used up) within 5 minutes. Each is a metric math SUM over the
// functions' own metrics, so a function added to serverless.yml is covered without editing an
// alarm. An alarm's metric math may use at most 10 metrics, a hard limit (CloudWatch, "Limits
// that apply to alarms based on metric math expressions"): one is the SUM, so the functions go
// 9 to an alarm (FunctionErrorsAlarm, FunctionErrorsAlarm2, ...). They notify the AlarmTopic
// declared in serverless.yml, which e-mails custom.alarms.email when one is given
// (--param alarmEmail=...).
const PERIOD_SECONDS = 300;
const FUNCTIONS_PER_ALARM = 9;

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
    for (let start = 0; start < functions.length; start += FUNCTIONS_PER_ALARM) {
      const group = functions.slice(start, start + FUNCTIONS_PER_ALARM);
      const suffix = start === 0 ? '' : String(start / FUNCTIONS_PER_ALARM + 1);
      this.resources[`FunctionErrorsAlarm${suffix}`] = alarm('Errors', group, 'Lambda functions failed (errors or timeouts).');
      this.resources[`FunctionThrottlesAlarm${suffix}`] = alarm('Throttles', group, 'Lambda invocations were throttled.');
    }
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
  return anyAtAll({
    AlarmDescription: description,
    Metrics: [...metrics, { Id: 'total', Expression: `SUM([${ids}])`, Label: `${metricName} of all functions`, ReturnData: true }],
  });
}

// An alarm on a queue's depth: anything in it (a dead-letter queue) is worth a look.
function queueDepthAlarm(queueLogicalId, description) {
  return anyAtAll({
    AlarmDescription: description,
    Namespace: 'AWS/SQS',
    MetricName: 'ApproximateNumberOfMessagesVisible',
    Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueLogicalId, 'QueueName'] } }],
    Statistic: 'Maximum',
    Period: PERIOD_SECONDS,
  });
}

// An alarm that fires at 1 within one period and tells the AlarmTopic, both ways.
function anyAtAll(properties) {
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      ...properties,
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
module.exports.queueDepthAlarm = queueDepthAlarm;

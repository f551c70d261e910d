'use strict';

// The review hook (docs/moderation.md, "The review hook"), shaped by its parameters before
// anything is compiled. serverless.yml declares the whole feature as reviewFunction=example has
// it (the example function, InvokeFunction on it alone, REVIEW_FUNCTION, the fallbacks' alarm);
// this plugin takes away or redirects:
// - none (the default): no example function, no grant, no alarm, REVIEW_FUNCTION empty
//   (chat/review.py then reviews nothing): the feature costs nothing;
// - an ARN: that function is called, the grant names that ARN only, the example is removed;
// - example: the example word list, this service's own function.
// reviewTimeoutMs (50 to 10000) and reviewFallback (allow | deny) are checked here, so a typo
// stops the deploy instead of every message.
const FUNCTION = 'reviewExample';
const ALARM = 'ReviewFallbacksAlarm';
// A Lambda function's ARN, with an optional version or alias ("Invoke", AWS Lambda API
// Reference: FunctionName). Names alone are refused: the grant needs the ARN.
const LAMBDA_ARN = /^arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(-gov)?-[a-z]+-\d:\d{12}:function:[a-zA-Z0-9-_]{1,64}(:(\$LATEST|[a-zA-Z0-9-_]+))?$/;
const TIMEOUT_MS = [50, 10000];

class Review {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { initialize: () => this.shape() };
  }

  shape() {
    const service = this.serverless.service;
    const settings = (service.custom || {}).review || {};
    const fail = (message) => { throw new this.serverless.classes.Error(message); };
    const timeout = String(settings.timeoutMs);
    if (!/^\d+$/.test(timeout) || Number(timeout) < TIMEOUT_MS[0] || Number(timeout) > TIMEOUT_MS[1]) {
      fail(`--param reviewTimeoutMs must be a whole number of milliseconds from ${TIMEOUT_MS[0]} to ${TIMEOUT_MS[1]}, not "${settings.timeoutMs}"`);
    }
    if (!['allow', 'deny'].includes(String(settings.fallback))) {
      fail(`--param reviewFallback must be allow or deny, not "${settings.fallback}"`);
    }
    const target = String(settings.function || '');
    const resources = (service.resources || {}).Resources || {};
    const statements = (((service.provider.iam || {}).role || {}).statements) || [];
    const grant = statements.findIndex((statement) => [].concat(statement.Action).includes('lambda:InvokeFunction'));
    const environment = service.provider.environment;
    if (target === 'example') {
      // The framework's name for it (<service>-<stage>-reviewExample): on AWS and in serverless-offline,
      // whose Lambda endpoint invokes a function by that name.
      const stage = this.serverless.getProvider('aws').getStage();
      environment.REVIEW_FUNCTION = service.functions[FUNCTION].name || `${service.service}-${stage}-${FUNCTION}`;
      return;
    }
    delete service.functions[FUNCTION];
    if (target === '') {
      delete resources[ALARM];
      if (grant >= 0) statements.splice(grant, 1);
      environment.REVIEW_FUNCTION = '';
      return;
    }
    if (!LAMBDA_ARN.test(target)) {
      fail(`--param reviewFunction must be a Lambda function's ARN (arn:aws:lambda:<region>:<account>:function:<name>) or example, not "${target}"`);
    }
    environment.REVIEW_FUNCTION = target;
    if (grant >= 0) statements[grant].Resource = target;
  }
}

module.exports = Review;

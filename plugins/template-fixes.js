'use strict';

// Corrections to what the framework compiles for WebSocket APIs, applied to the template
// before it is written:
//
// 1. Its websocket compiler appends
//      execute-api:ManageConnections on arn:<partition>:execute-api:*:*:*/@connections/*
//    to the shared Lambda role: every WebSocket API in every region of every account.
//    serverless.yml grants the same action on this API's own stage; the wildcard goes.
//
// 2. An authorizer declared with `identitySource: []` is written as "IdentitySource": [].
//    The property is optional for REQUEST authorizers and means "no required sources" when
//    absent, so the empty list is removed rather than sent to API Gateway as it is.
//
// 3. The Lambda permissions it writes for the websocket functions (and their authorizer) let
//    API Gateway invoke them from ANY API in any account: no SourceArn (checkov CKV_AWS_364,
//    the confused-deputy problem). They are scoped to this API: routes invoke as
//    <api>/<stage>/<route>, the authorizer as <api>/authorizers/<id>.
//
// 4. A stage that logs needs API Gateway's account-wide CloudWatch role to be set in the
//    region first ("CloudWatch Logs role ARN must be set in account settings to enable
//    logging"). The framework adds a custom resource that sets it, but the WebSocket stage does
//    not wait for it: in a fresh account the two are created in parallel and the stage can
//    fail. The stage now DependsOn it. What the custom resource does (osls 4.3.1,
//    lib/plugins/aws/custom-resources/resources/api-gateway-cloud-watch-role/handler.js): on
//    the stack's creation it creates the IAM role serverlessApiGatewayCloudWatchRole (with the
//    AWS managed policy AmazonAPIGatewayPushToCloudWatchLogs) if missing, and unless the
//    account's role already is that one it REPLACES the account's cloudwatchRoleArn with it,
//    whoever set the old one; on update and delete it does nothing (the role and the setting
//    stay after `sls remove`). With --param setApiGatewayAccountRole=false the stack leaves
//    the account alone: the custom resource, its function and its role are removed, and the
//    account owner sets the role once (docs/production.md: "API Gateway's CloudWatch role").
//
// 5. The framework's custom-resource role has no CloudWatch Logs permissions, so a failure of its
//    function (the one setting the account's CloudWatch role) leaves no log at all. It may now
//    write its own log group, nothing else.
//
// 6. A stage that logged before the stack made its execution log group already has that group
//    (API Gateway created it): creating it again fails the deploy ("already exists"). With
//    --param createExecutionLogGroup=false the stack leaves the existing group alone
//    (docs/production.md: "Upgrading a stage").
const WILDCARD = 'arn:${AWS::Partition}:execute-api:*:*:*/@connections/*';

const isWildcardGrant = (statement) =>
  Array.isArray(statement.Resource) &&
  statement.Resource.some((resource) => resource && resource['Fn::Sub'] === WILDCARD);

class TemplateFixes {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      // The settings are read before any work: one that means nothing is refused at once, not
      // after the package is built (a second, not ten).
      initialize: () => this.readSettings(),
      'after:package:compileEvents': () => {
        this.removeWildcardGrant();
        this.removeEmptyIdentitySources();
        this.scopeApiGatewayPermissions();
        this.orderStageAfterAccountRole();
        this.letCustomResourcesLog();
        this.throttlePublish();
      },
      // serverless.yml's own resources and extensions are merged into the template only here.
      'after:aws:package:finalize:mergeCustomProviderResources': () => this.leaveAnExistingExecutionLogGroup(),
    };
  }

  readSettings() {
    const logs = (this.serverless.service.custom || {}).apiGatewayLogs || {};
    this.setAccountRole = this.trueOrFalse('setApiGatewayAccountRole', logs.setAccountRole, "API Gateway's CloudWatch role");
    this.createExecutionLogGroup = this.trueOrFalse('createExecutionLogGroup', logs.createExecutionLogGroup, 'Upgrading a stage');
  }

  trueOrFalse(name, value, section) {
    const setting = String(value);
    if (setting !== 'true' && setting !== 'false') {
      throw new this.serverless.classes.Error(`${name} must be true or false, not '${setting}' (docs/production.md: "${section}")`);
    }
    return setting === 'true';
  }

  get resources() {
    return this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
  }

  removeWildcardGrant() {
    const role = this.resources[this.serverless.getProvider('aws').naming.getRoleLogicalId()];
    if (!role) return;
    for (const policy of role.Properties.Policies || []) {
      const document = policy.PolicyDocument;
      document.Statement = document.Statement.filter((statement) => !isWildcardGrant(statement));
    }
  }

  removeEmptyIdentitySources() {
    for (const resource of Object.values(this.resources)) {
      const properties = resource.Properties || {};
      if (
        resource.Type === 'AWS::ApiGatewayV2::Authorizer' &&
        Array.isArray(properties.IdentitySource) &&
        properties.IdentitySource.length === 0
      ) {
        delete properties.IdentitySource;
      }
    }
  }

  orderStageAfterAccountRole() {
    const naming = this.serverless.getProvider('aws').naming;
    const customResource = naming.getCustomResourceApiGatewayAccountCloudWatchRoleResourceLogicalId();
    const stage = this.resources[naming.getWebsocketsStageLogicalId()];
    if (!this.resources[customResource] || !stage) return;
    if (this.setAccountRole) {
      stage.DependsOn = [...new Set([].concat(stage.DependsOn || [], customResource))];
      return;
    }
    const handler = naming.getCustomResourceApiGatewayAccountCloudWatchRoleHandlerFunctionLogicalId();
    delete this.resources[customResource];
    delete this.resources[handler];
    // The custom resources' shared role, when nothing else uses it (no other custom resource here).
    const role = naming.getCustomResourcesRoleLogicalId();
    const others = Object.entries(this.resources).filter(([logicalId]) => logicalId !== role);
    if (this.resources[role] && !JSON.stringify(others).includes(`"${role}"`)) {
      delete this.resources[role];
    }
  }

  // POST /publish and POST /moderate get a throttle of their own on the REST API's stage, which the framework creates
  // through its deployment's StageName: StageDescription's MethodSettings set it (the resource
  // path with "/" encoded as "~1": AWS::ApiGateway::Deployment MethodSetting).
  throttlePublish() {
    const [deploymentId] = Object.keys(this.resources).filter(
      (id) => this.resources[id].Type === 'AWS::ApiGateway::Deployment'
    );
    const custom = this.serverless.service.custom || {};
    if (!deploymentId) return;
    const settings = ['publish', 'moderate']
      .filter((path) => custom[path] && custom[path].rate != null)
      .map((path) => ({
        HttpMethod: 'POST', ResourcePath: `/~1${path}`,
        ThrottlingRateLimit: Number(custom[path].rate), ThrottlingBurstLimit: Number(custom[path].burst),
      }));
    if (!settings.length) return;
    const deployment = this.resources[deploymentId];
    deployment.Properties.StageDescription = { ...(deployment.Properties.StageDescription || {}), MethodSettings: settings };
  }

  letCustomResourcesLog() {
    const naming = this.serverless.getProvider('aws').naming;
    const role = this.resources[naming.getCustomResourcesRoleLogicalId()];
    if (!role) return;
    const stack = `${this.serverless.service.service}-${this.serverless.getProvider('aws').getStage()}`;
    const logGroups = {
      'Fn::Join': [
        '',
        ['arn:', { Ref: 'AWS::Partition' }, ':logs:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' },
          `:log-group:/aws/lambda/${stack}-custom-resource-*`],
      ],
    };
    role.Properties.Policies[0].PolicyDocument.Statement.push(
      { Effect: 'Allow', Action: ['logs:CreateLogGroup'], Resource: logGroups },
      {
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::Join': ['', [logGroups, ':*']] },
      },
    );
  }

  leaveAnExistingExecutionLogGroup() {
    if (this.createExecutionLogGroup) return;
    delete this.resources.WebsocketsExecutionLogGroup;
    for (const resource of Object.values(this.resources)) {
      if (Array.isArray(resource.DependsOn)) {
        resource.DependsOn = resource.DependsOn.filter((id) => id !== 'WebsocketsExecutionLogGroup');
      }
    }
  }

  scopeApiGatewayPermissions() {
    for (const resource of Object.values(this.resources)) {
      const properties = resource.Properties || {};
      if (
        resource.Type === 'AWS::Lambda::Permission' &&
        properties.Principal === 'apigateway.amazonaws.com' &&
        !properties.SourceArn
      ) {
        // Both were only there to order the resources; the references below now do that.
        delete resource.DependsOn;
        properties.SourceArn = {
          'Fn::Join': [
            '',
            [
              'arn:',
              { Ref: 'AWS::Partition' },
              ':execute-api:',
              { Ref: 'AWS::Region' },
              ':',
              { Ref: 'AWS::AccountId' },
              ':',
              { Ref: 'WebsocketsApi' },
              '/*',
            ],
          ],
        };
      }
    }
  }

}

module.exports = TemplateFixes;

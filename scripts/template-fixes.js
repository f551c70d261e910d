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
const WILDCARD = 'arn:${AWS::Partition}:execute-api:*:*:*/@connections/*';

const isWildcardGrant = (statement) =>
  Array.isArray(statement.Resource) &&
  statement.Resource.some((resource) => resource && resource['Fn::Sub'] === WILDCARD);

class TemplateFixes {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:package:compileEvents': () => {
        this.removeWildcardGrant();
        this.removeEmptyIdentitySources();
        this.scopeApiGatewayPermissions();
      },
    };
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

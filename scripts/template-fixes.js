'use strict';

// The framework's websocket compiler appends
//   execute-api:ManageConnections on arn:<partition>:execute-api:*:*:*/@connections/*
// to the shared Lambda role: every WebSocket API in every region of every account.
// serverless.yml already grants the same action on this API's own stage, so this plugin
// removes the wildcard grant from the compiled template before it is written.
const WILDCARD = 'arn:${AWS::Partition}:execute-api:*:*:*/@connections/*';

const isWildcardGrant = (statement) =>
  Array.isArray(statement.Resource) &&
  statement.Resource.some((resource) => resource && resource['Fn::Sub'] === WILDCARD);

class ScopedWebsocketPolicy {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:package:compileEvents': () => this.removeWildcardGrant(),
    };
  }

  removeWildcardGrant() {
    const provider = this.serverless.getProvider('aws');
    const { Resources } = this.serverless.service.provider.compiledCloudFormationTemplate;
    const role = Resources[provider.naming.getRoleLogicalId()];
    if (!role) return;
    for (const policy of role.Properties.Policies || []) {
      const document = policy.PolicyDocument;
      document.Statement = document.Statement.filter((statement) => !isWildcardGrant(statement));
    }
  }
}

module.exports = ScopedWebsocketPolicy;

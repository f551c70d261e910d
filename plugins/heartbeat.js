'use strict';

// The heartbeat route: {"action": "heartbeat"} keeps a connection open through API Gateway's
// 10-minute idle timeout as cheaply as AWS allows. It is a MOCK integration (WebSocket APIs
// support AWS_PROXY, AWS, HTTP_PROXY, HTTP and MOCK: "Set up a WebSocket API integration request
// in API Gateway"), with no route response: no Lambda runs and nothing is sent back, so one
// heartbeat costs one API Gateway message (docs/costs: $1.00 per million in us-east-1).
//
// The framework knows only routes with a function, so this adds the integration and the route to
// the compiled template, and makes the framework's deployment depend on the route (a deployment
// snapshots the routes that exist when it is created). serverless-offline has no MOCK
// integrations: offline the frame reaches $default, which answers it with nothing
// (chat/requests.is_heartbeat).
const crypto = require('crypto');

class Heartbeat {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:package:compileEvents': () => {
        this.addHeartbeatRoute();
        renameDeployment(this.serverless.service.provider.compiledCloudFormationTemplate);
      },
    };
  }

  addHeartbeatRoute() {
    const resources = this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
    if (!resources.WebsocketsApi) return;
    resources.HeartbeatIntegration = {
      Type: 'AWS::ApiGatewayV2::Integration',
      Properties: {
        ApiId: { Ref: 'WebsocketsApi' },
        IntegrationType: 'MOCK',
        // A MOCK integration answers with the status code its request template gives.
        TemplateSelectionExpression: '\\$default',
        RequestTemplates: { $default: '{"statusCode": 200}' },
      },
    };
    resources.HeartbeatWebsocketsRoute = {
      Type: 'AWS::ApiGatewayV2::Route',
      Properties: {
        ApiId: { Ref: 'WebsocketsApi' },
        RouteKey: 'heartbeat',
        AuthorizationType: 'NONE',
        Target: { 'Fn::Join': ['/', ['integrations', { Ref: 'HeartbeatIntegration' }]] },
      },
    };
    for (const resource of Object.values(resources)) {
      if (resource.Type === 'AWS::ApiGatewayV2::Deployment') {
        resource.DependsOn = [...(resource.DependsOn || []), 'HeartbeatWebsocketsRoute'];
      }
    }
  }
}

// A deployment snapshots the API's routes when it is created, and CloudFormation creates a new
// one only when the deployment's logical id changes. The framework names it after a hash of the
// WebSocket API's resources as they are when it compiles them, before this plugin adds the
// heartbeat route: a change made only to the heartbeat would never reach the stage. So the
// deployment is named again from every resource of the API as it is now, the heartbeat's
// included (not the stage, whose settings are the stage's own, not the deployment's), with the
// framework's own scheme: WebsocketsDeployment + the SHA-256 in base64, letters and digits only.
function renameDeployment(template) {
  const resources = template.Resources;
  const [oldId] = Object.keys(resources).filter((id) => resources[id].Type === 'AWS::ApiGatewayV2::Deployment');
  if (!oldId || !resources.WebsocketsApi) return;
  const newId = `WebsocketsDeployment${apiHash(resources).replace(/[^A-Za-z0-9]/g, '')}`;
  if (newId === oldId) return;
  resources[newId] = resources[oldId];
  delete resources[oldId];
  for (const resource of Object.values(resources)) {
    const properties = resource.Properties || {};
    if (properties.DeploymentId && properties.DeploymentId.Ref === oldId) {
      properties.DeploymentId = { Ref: newId };
    }
    if (Array.isArray(resource.DependsOn)) {
      resource.DependsOn = resource.DependsOn.map((id) => (id === oldId ? newId : id));
    }
  }
}

function apiHash(resources) {
  const part = {};
  for (const [id, resource] of Object.entries(resources)) {
    const properties = resource.Properties || {};
    const ofTheApi = id === 'WebsocketsApi' || (properties.ApiId && properties.ApiId.Ref === 'WebsocketsApi');
    if (!ofTheApi || ['AWS::ApiGatewayV2::Deployment', 'AWS::ApiGatewayV2::Stage'].includes(resource.Type)) continue;
    part[id] = resource;
  }
  return crypto.createHash('sha256').update(JSON.stringify(part)).digest('base64');
}

module.exports = Heartbeat;
module.exports.renameDeployment = renameDeployment;

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
class Heartbeat {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { 'after:package:compileEvents': () => this.addHeartbeatRoute() };
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

module.exports = Heartbeat;

"""Custom resource: the webhook's EventBridge connection, its API key read from an SSM SecureString
at deploy time. CloudFormation's ssm-secure references do not reach AWS::Events::Connection, and
the key must not be in the template. Inline (ZipFile: at most 4,096 characters)."""

import json
import urllib.request

import boto3


def handler(event, context):
    props = event.get("ResourceProperties", {})
    name = props.get("Name", "")
    physical = event.get("PhysicalResourceId") or name
    data, reason, status = {}, "", "SUCCESS"
    try:
        events = boto3.client("events")
        if event["RequestType"] == "Delete":
            try:
                events.delete_connection(Name=physical)
            except events.exceptions.ResourceNotFoundException:
                pass
        else:
            ssm = boto3.client("ssm")
            key = ssm.get_parameter(Name=props["ParameterName"], WithDecryption=True)["Parameter"]["Value"]
            auth = {"ApiKeyAuthParameters": {"ApiKeyName": props["HeaderName"], "ApiKeyValue": key}}
            args = {"Name": name, "AuthorizationType": "API_KEY", "AuthParameters": auth}
            if event["RequestType"] == "Update" and physical == name:
                answer = events.update_connection(**args)
            else:
                answer = events.create_connection(**args)
            physical = name
            data = {"Arn": answer["ConnectionArn"]}
    except Exception as error:  # CloudFormation must hear back, or it waits an hour
        status, reason = "FAILED", f"{type(error).__name__}: {error}"[:400]
    respond(event, context, status, physical or "none", data, reason)


def respond(event, context, status, physical, data, reason):
    log = getattr(context, "log_stream_name", "")
    body = {
        "Status": status,
        "Reason": f"{reason} (log stream {log})" if reason else log or "done",
        "PhysicalResourceId": physical,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "Data": data,
    }
    text = json.dumps(body).encode()
    request = urllib.request.Request(event["ResponseURL"], data=text, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()

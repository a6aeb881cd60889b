"""The task API's routes on its REST API: ``POST /<version>`` (submit) and
``GET /v1alpha2/tasks/{id}`` (status), each proxied to the task Lambda, and API Gateway's own
errors in the task API's error shape. Children of the REST API (permissions: of the Lambda)."""

import pulumi
import pulumi_aws as aws

from sdfleet.components.builders import api as apib


def gateway_responses(name: str, api: aws.apigateway.RestApi) -> None:
    """API Gateway's own 4xx/5xx in the task API's error shape."""
    for response_type in ("DEFAULT_4XX", "DEFAULT_5XX"):
        aws.apigateway.Response(
            f"{name}-{response_type.lower().replace('_', '-')}",
            rest_api_id=api.id,
            response_type=response_type,
            response_templates={"application/json": apib.gateway_error_template()},
            opts=pulumi.ResourceOptions(parent=api),
        )


def submit_routes(
    name: str, api: aws.apigateway.RestApi, fn: aws.lambda_.Function
) -> tuple[list[pulumi.Resource], dict[str, aws.apigateway.Resource]]:
    """``POST /<version>`` for each API version, proxied to the Lambda."""
    api_child = pulumi.ResourceOptions(parent=api)
    routes: list[pulumi.Resource] = []
    resources: dict[str, aws.apigateway.Resource] = {}
    for path in apib.API_PATHS:
        resource = aws.apigateway.Resource(
            f"{name}-{path}",
            rest_api=api.id,
            parent_id=api.root_resource_id,
            path_part=path,
            opts=api_child,
        )
        method = aws.apigateway.Method(
            f"{name}-{path}-post",
            rest_api=api.id,
            resource_id=resource.id,
            http_method="POST",
            authorization="NONE",
            api_key_required=True,
            opts=api_child,
        )
        integration = _lambda_proxy(f"{name}-{path}-integration", api, fn, resource, method)
        routes += [resource, method, integration]
        resources[path] = resource
    aws.lambda_.Permission(
        f"{name}-invoke",
        action="lambda:InvokeFunction",
        function=fn.name,
        principal="apigateway.amazonaws.com",
        source_arn=api.execution_arn.apply(lambda arn: f"{arn}/*/POST/*"),
        opts=pulumi.ResourceOptions(parent=fn),
    )
    return routes, resources


def status_route(
    name: str,
    api: aws.apigateway.RestApi,
    fn: aws.lambda_.Function,
    version: aws.apigateway.Resource,
) -> list[pulumi.Resource]:
    """``GET /v1alpha2/tasks/{id}``: API key required, the path parameter validated by
    API Gateway (present) and by the Lambda (the contract's id rule)."""
    api_child = pulumi.ResourceOptions(parent=api)
    tasks = aws.apigateway.Resource(
        f"{name}-{apib.STATUS_VERSION}-tasks",
        rest_api=api.id,
        parent_id=version.id,
        path_part=apib.STATUS_PATH_PARTS[0],
        opts=api_child,
    )
    task = aws.apigateway.Resource(
        f"{name}-{apib.STATUS_VERSION}-task-id",
        rest_api=api.id,
        parent_id=tasks.id,
        path_part=apib.STATUS_PATH_PARTS[1],
        opts=api_child,
    )
    validator = aws.apigateway.RequestValidator(
        f"{name}-path-validator",
        rest_api=api.id,
        validate_request_parameters=True,
        validate_request_body=False,
        opts=api_child,
    )
    method = aws.apigateway.Method(
        f"{name}-task-get",
        rest_api=api.id,
        resource_id=task.id,
        http_method="GET",
        authorization="NONE",
        api_key_required=True,
        request_parameters={apib.STATUS_PATH_PARAMETER: True},
        request_validator_id=validator.id,
        opts=api_child,
    )
    integration = _lambda_proxy(f"{name}-task-get-integration", api, fn, task, method)
    aws.lambda_.Permission(
        f"{name}-invoke-status",
        action="lambda:InvokeFunction",
        function=fn.name,
        principal="apigateway.amazonaws.com",
        source_arn=api.execution_arn.apply(apib.status_source_arn),
        opts=pulumi.ResourceOptions(parent=fn),
    )
    return [tasks, task, validator, method, integration]


def _lambda_proxy(
    name: str,
    api: aws.apigateway.RestApi,
    fn: aws.lambda_.Function,
    resource: aws.apigateway.Resource,
    method: aws.apigateway.Method,
) -> aws.apigateway.Integration:
    """The method's Lambda proxy integration (always invoked with POST, whatever the method)."""
    return aws.apigateway.Integration(
        name,
        rest_api=api.id,
        resource_id=resource.id,
        http_method=method.http_method,
        integration_http_method="POST",
        type="AWS_PROXY",
        uri=fn.invoke_arn,
        opts=pulumi.ResourceOptions(parent=api),
    )

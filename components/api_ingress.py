"""ApiIngress: the REST API (API key + usage plan) and the task Lambda behind it."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

import sdfleet.agent.contract
from sdfleet.agent.contract import RuntimeInfo
from sdfleet.components import api_routes as routes_
from sdfleet.components._inputs import as_args, none_means_default
from sdfleet.components.builders import api as apib
from sdfleet.components.builders import iam as iamb
from sdfleet.components.builders import task_table
from sdfleet.components.config_model import (
    ApiConfig,
    ObservabilityConfig,
    QuotaConfig,
    QuotaPeriod,
    TasksConfig,
    ThrottleConfig,
    config_default,
)

HANDLER_FILE = Path(__file__).parent / "task_api" / "handler.py"
CONTRACT_FILE = Path(sdfleet.agent.contract.__file__)
LAMBDA_RUNTIME = "python3.13"
LAMBDA_TIMEOUT_SECONDS = 15


@dataclass
class ApiIngressArgs:
    """Inputs of ApiIngress: where the task Lambda publishes tasks and writes results, the
    runtimes it accepts tasks for, the API's stage, throttling and logging, and the task
    table. Defaults are the stack configuration's (``sdfleet:api``, ``sdfleet:tasks``,
    ``sdfleet:observability``)."""

    input_topic_arn: pulumi.Input[str]
    """ARN of the SNS topic accepted tasks are published to (EventFanout.input_topic_arn)."""
    output_bucket_name: pulumi.Input[str]
    """Name of the bucket results are written to; the Lambda presigns result URLs in it."""
    output_bucket_arn: pulumi.Input[str]
    """ARN of that bucket, for the Lambda's IAM policy."""
    runtimes: list[RuntimeInfo]
    """The runtimes tasks may name, with their type and task limits; at least one."""
    stage_name: str | None = config_default(ApiConfig, "stage_name")
    """API Gateway stage name, the first path segment of the API URL (1-128 of A-Z a-z 0-9 _ -)."""
    rate_limit: float | None = config_default(ThrottleConfig, "rate_limit")
    """Usage-plan steady-state request rate, in requests per second."""
    burst_limit: int | None = config_default(ThrottleConfig, "burst_limit")
    """Usage-plan burst, in requests."""
    quota_limit: int | None = None
    """Requests allowed per quota period; unset for no quota."""
    quota_period: QuotaPeriod | None = config_default(QuotaConfig, "period")  # noqa: RUF009
    """The period quota_limit counts over: DAY, WEEK or MONTH."""
    reserved_concurrency: int | None = None
    """Reserved concurrent executions of the task Lambda; unset reserves none (reserving fails
    in new accounts, whose limit is 100)."""
    log_retention_days: int | None = config_default(ObservabilityConfig, "log_retention_days")
    """Retention of the Lambda's and the access logs, in days (a CloudWatch retention value)."""
    manage_account_log_role: bool | None = config_default(ApiConfig, "manage_account_log_role")
    """Set the region's API Gateway CloudWatch role (one per account and region); false if
    another stack manages it."""
    task_ttl_days: int | None = config_default(TasksConfig, "ttl_days")
    """Days a task's record is kept after its latest change (the task table's TTL), 1-365."""
    task_point_in_time_recovery: bool | None = config_default(TasksConfig, "point_in_time_recovery")
    """Point-in-time recovery of the task table (on in prod)."""
    task_table_kms_key_arn: str | None = None
    """A customer-managed KMS key for the task table; unset uses the AWS managed key."""
    status_url_expiry_seconds: int | None = config_default(ApiConfig, "status_url_expiry_seconds")
    """Lifetime of the presigned result URLs the status API returns, 60-43200 seconds."""
    trace_sample_rate: float | None = config_default(ObservabilityConfig, "trace_sample_rate")
    """Share of task requests X-Ray records, 0-1 (one a second always); 1 traces every task."""
    tags: dict[str, str] | None = field(default_factory=dict)
    """Tags for the task Lambda and the task table."""

    def __post_init__(self) -> None:
        none_means_default(self)
        # A plain string from a Python program is checked here: ValueError names the value.
        self.quota_period = QuotaPeriod(str(self.quota_period))
        if not 1 <= int(self.task_ttl_days or 0) <= 365:
            raise ValueError(f"task_ttl_days must be 1-365, got {self.task_ttl_days!r}")
        if not 0 <= float(self.trace_sample_rate or 0) <= 1:
            raise ValueError(f"trace_sample_rate must be 0-1, got {self.trace_sample_rate!r}")
        if not 60 <= int(self.status_url_expiry_seconds or 0) <= 43200:
            raise ValueError(
                f"status_url_expiry_seconds must be 60-43200, got {self.status_url_expiry_seconds!r}"
            )


def lambda_code() -> pulumi.AssetArchive:
    """The handler package plus the contract and task-store modules it imports; nothing else
    is shipped."""
    files = apib.lambda_files(HANDLER_FILE, CONTRACT_FILE.parent)
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {
        name: pulumi.FileAsset(str(path)) for name, path in files.items()
    }
    for init in apib.LAMBDA_PACKAGE_INITS:
        assets[init] = pulumi.StringAsset("")
    return pulumi.AssetArchive(assets)


class ApiIngress(pulumi.ComponentResource):
    """The task API: an API Gateway REST API with an API key and usage plan, the Lambda
    function that validates tasks, records them in the task table and publishes them to the
    input topic, and the status route that reads them back."""

    api_url: pulumi.Output[str]
    """The stage URL tasks are POSTed under (``<api_url>/<route>``)."""
    api_key: pulumi.Output[str]
    """The API key clients send in the x-api-key header (secret)."""
    rest_api_id: pulumi.Output[str]
    """ID of the REST API."""
    rest_api_name: pulumi.Output[str]
    """Name of the REST API (the dimension of its CloudWatch metrics)."""
    stage_name: pulumi.Output[str]
    """The deployed stage."""
    function_name: pulumi.Output[str]
    """Name of the task Lambda."""
    function_arn: pulumi.Output[str]
    """ARN of the task Lambda."""
    function_log_group_name: pulumi.Output[str]
    """The task Lambda's log group."""
    access_log_group_name: pulumi.Output[str]
    """The API's access log group."""
    task_table_name: pulumi.Output[str]
    """Name of the DynamoDB task table (one record per task id)."""
    task_table_arn: pulumi.Output[str]
    """ARN of the task table, for the agents' and the DLQ sweeper's policies."""

    def __init__(
        self, name: str, args: ApiIngressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:ApiIngress", name, None, opts)
        args = as_args(ApiIngressArgs, args)
        table = self._task_table(name, args)
        fn, fn_logs = self._function(name, args, table)
        api = aws.apigateway.RestApi(
            f"{name}-api",
            description="sdfleet task API",
            endpoint_configuration=aws.apigateway.RestApiEndpointConfigurationArgs(
                types="REGIONAL"
            ),
            api_key_source="HEADER",
            opts=pulumi.ResourceOptions(parent=self),
        )
        routes_.gateway_responses(name, api)
        routes, resources = routes_.submit_routes(name, api, fn)
        routes += routes_.status_route(name, api, fn, resources[apib.STATUS_VERSION])
        stage, access_logs = self._stage(name, args, api, routes)
        key = self._usage_plan(name, args, api, stage)

        self._sampling_rule(name, args, api, stage)

        self.api_url = stage.invoke_url
        self.api_key = pulumi.Output.secret(key.value)
        self.rest_api_id = api.id
        self.rest_api_name = api.name
        self.stage_name = stage.stage_name
        self.function_name = fn.name
        self.function_arn = fn.arn
        self.function_log_group_name = fn_logs.name
        self.access_log_group_name = access_logs.name
        self.task_table_name = table.name
        self.task_table_arn = table.arn
        self.register_outputs(
            {
                "api_url": self.api_url,
                "api_key": self.api_key,
                "rest_api_id": self.rest_api_id,
                "function_name": self.function_name,
                "task_table_name": self.task_table_name,
                "task_table_arn": self.task_table_arn,
            }
        )

    def _task_table(self, name: str, args: ApiIngressArgs) -> aws.dynamodb.Table:
        """One record per task id (``sdfleet.agent.task_state``): on demand, TTL, KMS."""
        return aws.dynamodb.Table(
            f"{name}-task-table",
            **task_table.table_args(
                point_in_time_recovery=bool(args.task_point_in_time_recovery),
                kms_key_arn=args.task_table_kms_key_arn,
            ),
            tags=args.tags or None,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _function(
        self, name: str, args: ApiIngressArgs, table: aws.dynamodb.Table
    ) -> tuple[aws.lambda_.Function, aws.cloudwatch.LogGroup]:
        """The task Lambda, its log group and its least-privilege role."""
        child = pulumi.ResourceOptions(parent=self)
        fn_logs = aws.cloudwatch.LogGroup(
            f"{name}-task-fn-logs", retention_in_days=args.log_retention_days, opts=child
        )
        role = aws.iam.Role(
            f"{name}-task-fn-role",
            assume_role_policy=json.dumps(iamb.service_trust_policy("lambda.amazonaws.com")),
            opts=child,
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-task-fn-policy",
            role=role.id,
            policy=pulumi.Output.all(
                args.input_topic_arn, args.output_bucket_arn, fn_logs.arn, table.arn
            ).apply(
                lambda a: json.dumps(
                    iamb.task_api_lambda_policy(
                        input_topic_arn=a[0],
                        output_bucket_arn=a[1],
                        log_group_arn=a[2],
                        task_table_arn=a[3],
                    )
                )
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        fn = aws.lambda_.Function(
            f"{name}-task-fn",
            runtime=LAMBDA_RUNTIME,
            architectures=["arm64"],
            handler=apib.LAMBDA_HANDLER,
            role=role.arn,
            code=lambda_code(),
            timeout=LAMBDA_TIMEOUT_SECONDS,
            memory_size=512,
            # Unset by default: reserving concurrency fails in new accounts (limit 100).
            reserved_concurrent_executions=args.reserved_concurrency,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=fn_logs.name
            ),
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={
                    "INPUT_TOPIC_ARN": args.input_topic_arn,
                    "OUTPUT_BUCKET": args.output_bucket_name,
                    "RUNTIMES": apib.runtimes_env(args.runtimes),
                    "TASK_TABLE_NAME": table.name,
                    "TASK_TTL_SECONDS": str(int(args.task_ttl_days or 0) * 86400),
                    "STATUS_URL_EXPIRY_SECONDS": str(args.status_url_expiry_seconds),
                }
            ),
            tags=args.tags or None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, fn_logs]),
        )
        return fn, fn_logs

    def _sampling_rule(
        self,
        name: str,
        args: ApiIngressArgs,
        api: aws.apigateway.RestApi,
        stage: aws.apigateway.Stage,
    ) -> aws.xray.SamplingRule:
        """The stage's X-Ray sampling rule (account-wide, so named after this stack and API)."""
        rule = (
            "sdfleet-"
            + hashlib.sha256(
                f"{pulumi.get_project()}/{pulumi.get_stack()}/{name}".encode()
            ).hexdigest()[:16]
        )
        return aws.xray.SamplingRule(
            f"{name}-sampling",
            service_name=pulumi.Output.concat(api.name, "/", stage.stage_name),
            **apib.sampling_rule(rule, float(args.trace_sample_rate or 0)),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _stage(
        self,
        name: str,
        args: ApiIngressArgs,
        api: aws.apigateway.RestApi,
        routes: list[pulumi.Resource],
    ) -> tuple[aws.apigateway.Stage, aws.cloudwatch.LogGroup]:
        """The deployment (redone when the route set changes), its stage and access logs."""
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=api.id,
            triggers={"routes": apib.routes_fingerprint()},
            opts=pulumi.ResourceOptions(parent=api, depends_on=routes),
        )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            retention_in_days=args.log_retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        stage_deps: list[pulumi.Resource] = []
        if args.manage_account_log_role:
            stage_deps.append(self._account_log_role(name))
        stage = aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=api.id,
            deployment=deployment.id,
            stage_name=args.stage_name,
            xray_tracing_enabled=True,
            access_log_settings=aws.apigateway.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=apib.access_log_format()
            ),
            opts=pulumi.ResourceOptions(parent=api, depends_on=stage_deps),
        )
        aws.apigateway.MethodSettings(
            f"{name}-method-settings",
            rest_api=api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            settings=aws.apigateway.MethodSettingsSettingsArgs(
                metrics_enabled=True, logging_level="OFF", data_trace_enabled=False
            ),
            opts=pulumi.ResourceOptions(parent=stage),
        )
        return stage, access_logs

    def _usage_plan(
        self,
        name: str,
        args: ApiIngressArgs,
        api: aws.apigateway.RestApi,
        stage: aws.apigateway.Stage,
    ) -> aws.apigateway.ApiKey:
        """The API key and the usage plan that throttles it."""
        child = pulumi.ResourceOptions(parent=self)
        plan = aws.apigateway.UsagePlan(
            f"{name}-usage-plan",
            api_stages=[
                aws.apigateway.UsagePlanApiStageArgs(api_id=api.id, stage=stage.stage_name)
            ],
            throttle_settings=aws.apigateway.UsagePlanThrottleSettingsArgs(
                rate_limit=args.rate_limit, burst_limit=args.burst_limit
            ),
            quota_settings=(
                aws.apigateway.UsagePlanQuotaSettingsArgs(
                    limit=args.quota_limit, period=str(args.quota_period)
                )
                if args.quota_limit
                else None
            ),
            opts=child,
        )
        key = aws.apigateway.ApiKey(f"{name}-key", enabled=True, opts=child)
        aws.apigateway.UsagePlanKey(
            f"{name}-usage-plan-key",
            key_id=key.id,
            key_type="API_KEY",
            usage_plan_id=plan.id,
            opts=pulumi.ResourceOptions(parent=plan),
        )
        return key

    def _account_log_role(self, name: str) -> aws.apigateway.Account:
        """API Gateway writes access logs through one role per account and region."""
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            assume_role_policy=json.dumps(iamb.service_trust_policy("apigateway.amazonaws.com")),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-role-push",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
            opts=pulumi.ResourceOptions(parent=role),
        )
        return aws.apigateway.Account(
            f"{name}-account",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )

"""sdfleet as a Pulumi component package: Pulumi's Python schema analyzer accepts every
component, and PulumiPlugin.yaml points at a provider host that imports without starting."""

import dataclasses
import importlib.util
import inspect
import sys
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema
from pulumi.provider.experimental.util import camel_case

import sdfleet
from sdfleet import provider
from sdfleet.components import _opts
from sdfleet.mocking import run_program

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["ApiIngress", "EventFanout", "GpuNodePool", "SdRuntime", "ModelStore", "Observability"]
NAMES += ["SdPipeline", "TaskEvents", "TraceCollector"]
# The served classes by name.
COMPONENT = {c.__name__: c for c in provider.COMPONENTS}
STRING = {"type": "string"}
STRING_MAP = {"type": "object", "additionalProperties": STRING}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    result = Analyzer("sdfleet").analyze([COMPONENT[name] for name in NAMES])
    spec = generate_schema(
        "sdfleet",
        "0.0.0",
        None,
        result["component_definitions"],
        result["type_definitions"],
        list(result["dependencies"]),
    )
    out: dict[str, Any] = spec.to_json()
    return out


def resource(schema: dict[str, Any], name: str) -> dict[str, Any]:
    out: dict[str, Any] = schema["resources"][f"sdfleet:index:{name}"]
    return out


def typed(prop: dict[str, Any]) -> dict[str, Any]:
    """A schema property's type, without the descriptions (the analyzer repeats a field's
    docstring on its map values and list items)."""
    return {
        k: typed(v) if isinstance(v, dict) else v for k, v in prop.items() if k != "description"
    }


def test_all_eight_components_are_in_the_schema(schema: dict[str, Any]) -> None:
    assert sorted(schema["resources"]) == sorted(f"sdfleet:index:{n}" for n in NAMES)
    for name in NAMES:
        res = resource(schema, name)
        assert res["isComponent"] is True
        assert res["inputProperties"], name
        assert res["properties"], name


def args_class(name: str) -> Any:
    return getattr(sys.modules[COMPONENT[name].__module__], f"{name}Args")


def enum_of(annotation: Any) -> type[Enum] | None:
    """The Enum an Args field is typed with, under any ``X | None``."""
    for tp in (annotation, *typing.get_args(annotation)):
        if isinstance(tp, type) and issubclass(tp, Enum):
            return tp
    return None


@pytest.mark.parametrize("name", NAMES)
def test_required_inputs_are_the_fields_without_defaults(schema: dict[str, Any], name: str) -> None:
    fields = dataclasses.fields(args_class(name))
    without_default = {
        camel_case(f.name)
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    res = resource(schema, name)
    assert set(res.get("requiredInputs", [])) == without_default
    assert set(res["inputProperties"]) == {camel_case(f.name) for f in fields}


@pytest.mark.parametrize("name", NAMES)
def test_every_input_and_output_is_described(schema: dict[str, Any], name: str) -> None:
    res = resource(schema, name)
    for kind in ("inputProperties", "properties"):
        undescribed = [k for k, v in res[kind].items() if not v.get("description")]
        assert undescribed == [], f"{name} {kind}"
    doc = args_class(name).__doc__
    assert doc and not doc.startswith(f"{name}Args("), name  # its own, not dataclass's


@pytest.mark.parametrize("name", NAMES)
def test_closed_sets_are_schema_enums(schema: dict[str, Any], name: str) -> None:
    hints = inspect.get_annotations(args_class(name))
    inputs = resource(schema, name)["inputProperties"]
    for field_name, annotation in hints.items():
        enum = enum_of(annotation)
        if enum is None:
            continue
        ref = inputs[camel_case(field_name)]["$ref"]
        assert ref == f"#/types/sdfleet:index:{enum.__name__}"
        members = schema["types"][f"sdfleet:index:{enum.__name__}"]["enum"]
        assert [m["value"] for m in members] == [m.value for m in enum]


def test_known_closed_sets_are_enums(schema: dict[str, Any]) -> None:
    quota = resource(schema, "ApiIngress")["inputProperties"]["quotaPeriod"]
    assert quota["$ref"] == "#/types/sdfleet:index:QuotaPeriod"
    periods = schema["types"]["sdfleet:index:QuotaPeriod"]
    assert periods["type"] == "string"
    assert [m["value"] for m in periods["enum"]] == ["DAY", "WEEK", "MONTH"]


def test_event_fanout_inputs_and_outputs_are_typed(schema: dict[str, Any]) -> None:
    res = resource(schema, "EventFanout")
    inputs = res["inputProperties"]
    assert inputs["runtimeNames"]["type"] == "array"
    assert inputs["runtimeNames"]["items"]["type"] == "string"
    assert inputs["maxReceiveCount"]["type"] == "integer"
    assert inputs["outputForceDestroy"]["type"] == "boolean"
    props = {k: typed(v) for k, v in res["properties"].items()}
    assert props["inputTopicArn"] == STRING
    assert props["outputBucketName"] == STRING
    assert props["queueUrls"] == STRING_MAP
    assert props["dlqArns"] == STRING_MAP


def test_served_components_are_the_package_exports() -> None:
    for name in NAMES:
        if name in sdfleet.__all__:
            assert getattr(sdfleet, name) is COMPONENT[name]
    assert set(NAMES) - set(sdfleet.__all__) <= {"TraceCollector"}


def test_trace_collector_inputs_and_outputs(schema: dict[str, Any]) -> None:
    res = resource(schema, "TraceCollector")
    assert res["requiredInputs"] == ["clusterName"]
    inputs = res["inputProperties"]
    selector = inputs["systemNodeSelector"]
    assert selector["type"] == "object"
    assert selector["additionalProperties"]["type"] == "string"
    assert inputs["replicas"]["type"] == "integer"
    assert inputs["otlpGrpc"]["type"] == "boolean"
    props = {k: typed(v) for k, v in res["properties"].items()}
    assert props == {"otlpTracesEndpoint": STRING, "namespace": STRING, "roleArn": STRING}


def test_provider_and_depends_on_are_not_inputs(schema: dict[str, Any]) -> None:
    """They come through ResourceOptions; an Args field of ProviderResource type is rejected."""
    for name in ("GpuNodePool", "SdRuntime", "TraceCollector"):
        inputs = resource(schema, name)["inputProperties"]
        assert "k8sProvider" not in inputs
        assert "dependsOn" not in inputs
    runtime = resource(schema, "SdRuntime")["inputProperties"]
    assert runtime["queueUrl"]["type"] == "string"
    assert runtime["serverArgs"]["type"] == "array"
    assert runtime["serverArgs"]["items"]["type"] == "string"
    assert runtime["taskLimits"]["$ref"] == "#/types/sdfleet:index:Limits"


def test_nested_args_are_object_types(schema: dict[str, Any]) -> None:
    runtimes = resource(schema, "Observability")["inputProperties"]["runtimes"]
    assert runtimes["additionalProperties"]["$ref"] == "#/types/sdfleet:index:ObservedRuntime"
    names = schema["types"]["sdfleet:index:ObservedRuntime"]["properties"]
    assert set(names) == {
        "queueName",
        "dlqName",
        "namespace",
        "deploymentName",
        "metricsLogGroupName",
    }
    assert all(prop["type"] == "string" for prop in names.values())
    # SdPipeline takes the validated stack config: its model is plain typed classes.
    config = resource(schema, "SdPipeline")["inputProperties"]["config"]
    assert config["$ref"] == "#/types/sdfleet:index:StackConfig"
    stack = schema["types"]["sdfleet:index:StackConfig"]["properties"]
    assert stack["runtimes"]["items"]["$ref"] == "#/types/sdfleet:index:RuntimeConfig"
    assert stack["spotRatio"]["type"] == "number"


def test_pipeline_outputs_are_the_stack_outputs(schema: dict[str, Any]) -> None:
    props = {k: typed(v) for k, v in resource(schema, "SdPipeline")["properties"].items()}
    assert props["apiUrl"] == props["clusterName"] == props["agentImageRef"] == STRING
    assert props["queueUrls"] == STRING_MAP
    assert props["runtimeNamespaces"] == STRING_MAP
    # Child components are attributes for Python users, not schema outputs.
    assert not {"models", "fanout", "cluster", "runtimes", "outputs"} & set(props)


def test_descriptions_come_from_docstrings(schema: dict[str, Any]) -> None:
    for name in NAMES:
        doc = COMPONENT[name].__doc__
        assert doc, name
        assert resource(schema, name)["description"] == doc.strip()
    assert "dead-letter" in resource(schema, "EventFanout")["description"]
    queue_name = schema["types"]["sdfleet:index:ObservedRuntime"]["properties"]["queueName"]
    assert queue_name["description"] == "The runtime's task queue."


def test_plugin_main_exposes_the_host_without_starting_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = yaml.safe_load((ROOT / "PulumiPlugin.yaml").read_text())
    assert plugin["runtime"]["name"] == "python"
    main = ROOT / plugin["main"]
    assert main.is_file()
    # Pulumi.yaml beside it runs the program; the plugin must not be the program's __main__.py.
    assert main != ROOT / "__main__.py"

    started: list[Any] = []
    monkeypatch.setattr(
        "pulumi.provider.experimental.component_provider_host",
        lambda **kwargs: started.append(kwargs),
    )
    spec = importlib.util.spec_from_file_location("sdfleet_plugin_main", main)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sdfleet_plugin_main", module)
    spec.loader.exec_module(module)
    assert started == []  # importing does not start the host
    assert [c.__name__ for c in module.COMPONENTS] == NAMES
    module.main()
    assert started == [{"components": provider.COMPONENTS, "name": "sdfleet"}]


def test_options_give_the_kubernetes_provider_and_dependencies() -> None:
    """What GpuNodePool and SdRuntime read from their ResourceOptions."""
    seen: dict[str, Any] = {}

    def program() -> None:
        aws_provider = aws.Provider("other-account", region="us-west-2")
        cluster = k8s.Provider("byo-cluster", kubeconfig="{}")
        addon = aws.eks.Addon("addon", cluster_name="c1", addon_name="eks-pod-identity-agent")
        seen["list"] = _opts.k8s_provider(pulumi.ResourceOptions(providers=[aws_provider, cluster]))
        seen["map"] = _opts.k8s_provider(pulumi.ResourceOptions(providers={"kubernetes": cluster}))
        seen["aws only"] = _opts.k8s_provider(pulumi.ResourceOptions(provider=aws_provider))
        seen["cluster"] = cluster
        seen["one"] = _opts.depends_on(pulumi.ResourceOptions(depends_on=addon))
        seen["addon"] = addon
        with pytest.raises(TypeError, match=r"ResourceOptions.depends_on: .* not a resource"):
            _opts.depends_on(pulumi.ResourceOptions(depends_on=[addon.arn]))  # type: ignore[list-item]

    run_program(program, {"aws:region": "us-east-1"})
    assert seen["list"] is seen["map"] is seen["cluster"]
    assert seen["aws only"] is None
    assert seen["one"] == [seen["addon"]]
    assert _opts.k8s_provider(None) is None
    assert _opts.depends_on(None) == []

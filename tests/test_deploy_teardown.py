"""Teardown: which buckets and repositories `pulumi destroy` may delete with their contents
(``forceDestroy`` under sdfleet:models, sdfleet:outputs and sdfleet:agent)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sdfleet.components.agent_image import AgentImage, AgentImageArgs
from sdfleet.components.config import ConfigError, parse_config, split_namespaced
from sdfleet.components.event_fanout import EventFanout, EventFanoutArgs
from sdfleet.components.model_store import ModelStore, ModelStoreArgs
from sdfleet.mocking import Recorder, run_program
from tests.conftest import load_stack

BUCKET = "aws:s3/bucket:Bucket"
REPO = "aws:ecr/repository:Repository"


def _parse(overrides: dict[str, Any]) -> Any:
    raw = copy.deepcopy(load_stack("dev"))
    raw.update(overrides)
    return parse_config(split_namespaced(raw))


def test_defaults_keep_models_and_let_results_and_images_go() -> None:
    config = _parse({})
    assert config.models.force_destroy is False
    assert config.outputs.force_destroy is True
    assert config.agent.force_destroy is True


def test_settings_accept_booleans_and_their_string_form() -> None:
    config = _parse(
        {
            "sdfleet:models": {"forceDestroy": "true"},
            "sdfleet:outputs": {"forceDestroy": False},
            "sdfleet:agent": {"forceDestroy": "false"},
        }
    )
    assert config.models.force_destroy is True
    assert config.outputs.force_destroy is False
    assert config.agent.force_destroy is False


def test_non_boolean_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        _parse({"sdfleet:outputs": {"forceDestroy": "yes"}})
    assert info.value.errors == ["sdfleet:outputs.forceDestroy: 'yes' must be true or false"]


def test_force_destroy_never_applies_to_an_existing_model_bucket() -> None:
    with pytest.raises(ConfigError) as info:
        _parse({"sdfleet:models": {"bucketName": "team-models", "forceDestroy": True}})
    (error,) = info.value.errors
    assert error.startswith("sdfleet:models.forceDestroy: True would apply to the existing bucket")
    assert "'team-models'" in error
    # Off (the default) is fine with an existing bucket.
    assert _parse({"sdfleet:models": {"bucketName": "team-models"}}).models.bucket_name


def test_dev_stack_resources_carry_the_defaults(dev_graph: Recorder) -> None:
    assert dev_graph.one(BUCKET, "sdfleet-models-models").inputs["forceDestroy"] is False
    assert dev_graph.one(BUCKET, "sdfleet-events-outputs").inputs["forceDestroy"] is True
    assert dev_graph.one(REPO, "sdfleet-agent-repo").inputs["forceDelete"] is True


@pytest.mark.parametrize("force", [True, False])
def test_components_pass_the_setting_through(force: bool) -> None:
    def program() -> None:
        ModelStore("ms", ModelStoreArgs(force_destroy=force))
        EventFanout("ev", EventFanoutArgs(runtime_names=["a"], output_force_destroy=force))
        AgentImage("ag", AgentImageArgs(force_delete=force))

    graph = run_program(program)
    assert graph.one(BUCKET, "ms-models").inputs["forceDestroy"] is force
    assert graph.one(BUCKET, "ev-outputs").inputs["forceDestroy"] is force
    assert graph.one(REPO, "ag-repo").inputs["forceDelete"] is force


def test_component_defaults_are_the_programs() -> None:
    """Library users get the stack config's defaults (one place): the model bucket is never
    force-destroyed unless asked; results and images, which the stack can rebuild or which
    expire anyway, are, so that `pulumi destroy` finishes."""
    assert ModelStoreArgs().force_destroy is False
    assert EventFanoutArgs(runtime_names=["a"]).output_force_destroy is True
    assert AgentImageArgs().force_delete is True


def test_model_store_refuses_force_destroy_on_an_existing_bucket() -> None:
    def program() -> None:
        ModelStore("ms", ModelStoreArgs(existing_bucket_name="team-models", force_destroy=True))

    with pytest.raises(ValueError, match=r"force_destroy: got True with existing_bucket_name"):
        run_program(program)

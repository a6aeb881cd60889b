"""The fake ComfyUI's prompt validation: upstream's error types, messages and ``node_errors``."""

from __future__ import annotations

from typing import Any

from sdfleet.fakes.comfyui.api import NODE_SPECS, comfy_error, strip_annotation
from sdfleet.fakes.comfyui.state import ComfyUIState

Spec = dict[str, tuple[Any, dict[str, Any]]]
Done = dict[str, tuple[bool, list[dict[str, Any]]]]


def _output_nodes(graph: Any, targets: list[str] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """(error or None, the output nodes to run): the checks before any input is validated."""
    if not isinstance(graph, dict):
        return comfy_error(
            "invalid_prompt",
            "Cannot execute because a node is missing the class_type property.",
            "Node ID '#'",
        ), []
    outputs = []
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return comfy_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            ), []
        if node["class_type"] not in NODE_SPECS:
            return comfy_error(
                "invalid_prompt",
                f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{node_id}'",
            ), []
        if NODE_SPECS[node["class_type"]][2] and (targets is None or node_id in targets):
            outputs.append(node_id)
    if not outputs:
        return comfy_error("prompt_no_outputs", "Prompt has no outputs"), []
    return None, outputs


def _link_error(
    graph: dict[str, Any], name: str, typ: Any, config: list[Any], val: list[Any]
) -> dict[str, Any] | None:
    """The error of a linked input ``[node_id, slot]``, or None if the link is sound."""
    if len(val) != 2 or not isinstance(val[0], str) or not isinstance(val[1], int):
        return comfy_error("bad_linked_input", "Bad linked input, must be a length-2 list of [string, int]", name,
                           {"input_name": name, "input_config": config, "received_value": val})  # fmt: skip
    src_id, slot = val
    src = graph.get(src_id)
    if not isinstance(src, dict) or src.get("class_type") not in NODE_SPECS:
        return comfy_error("exception_during_inner_validation", "Exception when validating inner node",
                           f"KeyError('{src_id}')", {"input_name": name, "input_config": config,
                                                      "received_value": val})  # fmt: skip
    src_types = NODE_SPECS[src["class_type"]][1]
    if slot < 0 or slot >= len(src_types):
        return comfy_error("exception_during_inner_validation", "Exception when validating inner node",
                           "tuple index out of range", {"input_name": name})  # fmt: skip
    received = src_types[slot]
    expected = "COMBO" if isinstance(typ, list) else typ
    if received != expected:
        return comfy_error("return_type_mismatch", "Return type mismatch between linked nodes",
                           f"{name}, received_type({received}) mismatch input_type({expected})",
                           {"input_name": name, "input_config": config, "received_type": received,
                            "linked_node": val})  # fmt: skip
    return None


class ComfyUIValidation(ComfyUIState):
    """``POST /prompt`` validation against ``NODE_SPECS``, the checkpoints and the uploads."""

    def _spec(self, class_type: str) -> tuple[Spec, list[str], bool]:
        required, outputs, is_output = NODE_SPECS[class_type]
        resolved = {}
        for name, (typ, opts) in required.items():
            if typ == "CKPT":
                typ = list(self.checkpoints)
            elif typ == "INPUT_FILES":
                typ = sorted(self.uploads)
            resolved[name] = (typ, opts)
        return resolved, outputs, is_output

    def _validate_node(self, graph: dict[str, Any], node_id: str, done: Done) -> bool:
        if node_id in done:
            return done[node_id][0]
        done[node_id] = (True, [])  # cycles are out of scope
        node = graph[node_id]
        required, _, _ = self._spec(node["class_type"])
        inputs = node.get("inputs") or {}
        errors: list[dict[str, Any]] = []
        valid = True
        for name, (typ, opts) in required.items():
            config = [typ, opts] if opts else [typ]
            if name not in inputs:
                errors.append(
                    comfy_error(
                        "required_input_missing",
                        "Required input is missing",
                        name,
                        {"input_name": name},
                    )
                )
                continue
            val = inputs[name]
            error: dict[str, Any] | None
            if isinstance(val, list):
                error = _link_error(graph, name, typ, config, val)
                if error is None and not self._validate_node(graph, val[0], done):
                    valid = False
            else:
                error = self._value_error(node["class_type"], name, typ, opts, config, val)
            if error is not None:
                errors.append(error)
        if errors:
            valid = False
        done[node_id] = (valid, errors)
        return valid

    def _value_error(
        self,
        class_type: str,
        name: str,
        typ: Any,
        opts: dict[str, Any],
        config: list[Any],
        val: Any,
    ) -> dict[str, Any] | None:
        """The error of a widget value (number, string or combo), or None if it is valid."""
        extra = {"input_name": name, "input_config": config, "received_value": val}
        if typ in ("INT", "FLOAT"):
            try:
                num: float = int(val) if typ == "INT" else float(val)
            except (TypeError, ValueError) as e:
                return comfy_error("invalid_input_type", f"Failed to convert an input value to a {typ} value",
                                   f"{name}, {val}, {e}", {**extra, "exception_message": str(e)})  # fmt: skip
            if "min" in opts and num < opts["min"]:
                return comfy_error(
                    "value_smaller_than_min",
                    f"Value {num} smaller than min of {opts['min']}",
                    name,
                    extra,
                )
            if "max" in opts and num > opts["max"]:
                return comfy_error(
                    "value_bigger_than_max",
                    f"Value {num} bigger than max of {opts['max']}",
                    name,
                    extra,
                )
        elif typ == "STRING":
            if isinstance(val, dict):
                return comfy_error("invalid_input_type", "Failed to convert an input value to a STRING value",
                                   f"{name}, {val}", extra)  # fmt: skip
        elif isinstance(typ, list):
            if class_type == "LoadImage":
                if strip_annotation(str(val))[0] not in self.uploads:
                    return comfy_error("custom_validation_failed", "Custom validation failed for node",
                                       f"{name} - Invalid image file: {val}", extra)  # fmt: skip
            elif val not in typ:
                shown = typ if len(typ) <= 20 else [*typ[:20], f"... ({len(typ) - 20} more)"]
                return comfy_error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{val}' not in {shown}",
                    extra,
                )
        return None

    def _validate_prompt(
        self, graph: Any, targets: list[str] | None
    ) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
        """Returns (error or None, good outputs, node_errors)."""
        error, outputs = _output_nodes(graph, targets)
        if error is not None:
            return error, [], {}
        good: list[str] = []
        node_errors: dict[str, Any] = {}
        messages: list[str] = []
        for out in outputs:
            done: Done = {}
            if self._validate_node(graph, out, done):
                good.append(out)
                continue
            for nid, (_, errs) in done.items():
                if not errs:
                    continue
                entry = node_errors.setdefault(
                    nid,
                    {
                        "errors": errs,
                        "dependent_outputs": [],
                        "class_type": graph[nid]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(out)
                messages.extend(f"{e['message']}: {e['details']}" for e in errs)
        if not good:
            details = "\n".join(dict.fromkeys(messages))
            return (
                comfy_error(
                    "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
                ),
                [],
                node_errors,
            )
        return None, good, node_errors

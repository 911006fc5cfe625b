"""Model-card metadata checks of the local test Hub (`hub_server.py`): its `/api/validate-yaml`.

The real Hub validates the YAML block of every README.md that is committed (and
`ModelCard.validate()` asks it to). These are the checks the local Hub implements: the YAML must
parse to a mapping; `license` must be one string among the Hub's license ids (`license_name` when
it is "other"); `language` ISO 639 codes; `tags`, `datasets`, `metrics` strings or lists of strings;
`pipeline_tag`, `library_name` strings; `base_model` repo ids; and `model-index` must follow the
Hub's spec (name, results with task.type, dataset.type/name, non-empty metrics with type and a
numeric or string value). Unknown keys are accepted, as on the Hub. An empty block is a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

KNOWN_LICENSES = frozenset(
    "apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "
    "bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda "
    "cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 "
    "cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 "
    "cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 "
    "etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc "
    "h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 "
    "osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license "
    "fair-noncommercial-research-license "
    "llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma unknown other".split()
)
_LANGUAGE_RE = re.compile(r"^(?:[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*|code|multilingual)$")
_REPO_ID_RE = re.compile(r"^[\w.\-]+(?:/[\w.\-]+)?$")


def _str_or_str_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _check_model_index(model_index: Any) -> list[str]:
    """Errors in a `model-index` block (see the Hub's modelcard.md spec)."""
    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty array']
    errors = []
    for i, model in enumerate(model_index):
        where = f'"model-index[{i}]"'
        if not isinstance(model, dict):
            errors.append(f"{where} must be an object")
            continue
        if not isinstance(model.get("name"), str) or not model["name"]:
            errors.append(f"{where}.name must be a non-empty string")
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f"{where}.results must be an array")
            continue
        for j, result in enumerate(results):
            errors += _check_eval_result(result, f"{where}.results[{j}]")
    return errors


def _check_eval_result(result: Any, where: str) -> list[str]:
    if not isinstance(result, dict):
        return [f"{where} must be an object"]
    errors = []
    task, dataset, metrics = result.get("task"), result.get("dataset"), result.get("metrics")
    if not isinstance(task, dict) or not isinstance(task.get("type"), str):
        errors.append(f"{where}.task.type is required and must be a string")
    if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("type", "name")):
        errors.append(f"{where}.dataset.type and .name are required strings")
    elif dataset.get("args") is not None and not isinstance(dataset["args"], (dict, str)):
        errors.append(f"{where}.dataset.args must be an object or a string")
    if not isinstance(metrics, list) or not metrics:
        errors.append(f"{where}.metrics must be a non-empty array")
        return errors
    for k, metric in enumerate(metrics):
        mwhere = f"{where}.metrics[{k}]"
        if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
            errors.append(f"{mwhere}.type is required and must be a string")
            continue
        value = metric.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            errors.append(f"{mwhere}.value is required and must be a number or a string")
        if metric.get("args") is not None and not isinstance(metric["args"], (dict, str)):
            errors.append(f"{mwhere}.args must be an object or a string")
    return errors


def check_card_metadata(metadata: Mapping[str, Any]) -> list[str]:
    """The errors the Hub would report for a model card's YAML metadata (the checks we implement)."""
    errors = []
    license_ = metadata.get("license")
    if license_ is not None:
        if not isinstance(license_, str):
            errors.append('"license" must be a string')
        elif license_ not in KNOWN_LICENSES:
            errors.append(f'"license" must be a license identifier known to the Hub, got {license_!r}')
        elif license_ == "other" and not isinstance(metadata.get("license_name"), str):
            errors.append('"license_name" is required when "license" is "other"')
    language = metadata.get("language")
    if language is not None:
        languages = [language] if isinstance(language, str) else language
        if not _str_or_str_list(language) or not all(_LANGUAGE_RE.match(x) for x in languages):
            errors.append('"language" must be an ISO 639 code or a list of them')
    for key in ("tags", "datasets", "metrics"):
        if metadata.get(key) is not None and not _str_or_str_list(metadata[key]):
            errors.append(f'"{key}" must be a string or an array of strings')
    for key in ("pipeline_tag", "library_name", "license_name", "license_link"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            errors.append(f'"{key}" must be a string')
    base_model = metadata.get("base_model")
    if base_model is not None:
        ids = [base_model] if isinstance(base_model, str) else base_model
        if not _str_or_str_list(base_model) or not all(_REPO_ID_RE.match(x) for x in ids):
            errors.append('"base_model" must be a repo id or a list of repo ids')
    if "model-index" in metadata:
        errors += _check_model_index(metadata["model-index"])
    return errors


def split_front_matter(content: str) -> tuple[str | None, str]:
    """(`yaml text` or None, rest) of a README: the metadata block is between two `---` lines."""
    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", content, re.DOTALL)
    if match is None:
        return None, content
    return match.group(1), content[match.end() :]


def validate_readme(content: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a README.md, like the Hub's `/api/validate-yaml`."""
    yaml_text, _ = split_front_matter(content)
    if yaml_text is None or not yaml_text.strip():
        return [], ["Empty or missing yaml metadata in repo card"]
    try:
        metadata = yaml.safe_load(yaml_text)
    except yaml.YAMLError as exc:
        return [f"Invalid YAML in metadata: {exc}"], []
    if metadata is None:
        return [], ["Empty or missing yaml metadata in repo card"]
    if not isinstance(metadata, dict):
        return ["Metadata must be a YAML mapping"], []
    return check_card_metadata(metadata), []


def card_data(readme: bytes | None) -> dict[str, Any] | None:
    """The metadata of a README.md (what the Hub reports as `cardData`), if it parses to a mapping."""
    if readme is None:
        return None
    yaml_text, _ = split_front_matter(readme.decode("utf-8", "replace"))
    try:
        metadata = yaml.safe_load(yaml_text) if yaml_text else None
    except yaml.YAMLError:
        return None
    return metadata if isinstance(metadata, dict) else None

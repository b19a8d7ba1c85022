"""Structured outputs (api.md §5.6): the `done` tool's result schema and the final formatting.

structured_json: the result must validate against outputSchema (jsonschema); the message is the
JSON string. structured_csv: outputSchema is the list of columns; the message is CSV text whose
first row is exactly those columns.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from agents.types import AgentError, TaskSpec

TEXT = "text"
JSON = "structured_json"
CSV = "structured_csv"


class StructuredOutputError(ValueError):
    """The model's result does not fit the requested output; the message says why."""


def csv_columns(task: TaskSpec) -> list[str]:
    """Return the CSV columns of a structured_csv task, or raise AgentError if they are missing."""
    columns = task.output_schema
    if isinstance(columns, dict):
        columns = columns.get("columns")
    if not isinstance(columns, list | tuple) or not columns or not all(isinstance(c, str) for c in columns):
        raise AgentError(
            "INVALID_PARAMETER",
            "structured_csv needs outputSchema: a list of column names",
        )
    return list(columns)


def result_schema(task: TaskSpec) -> dict[str, Any]:
    """Return the JSON Schema of the `done` tool's `result` for this task's output type."""
    if task.output_type == JSON:
        if not isinstance(task.output_schema, dict):
            raise AgentError(
                "INVALID_PARAMETER",
                "structured_json needs outputSchema: a JSON Schema object",
            )
        try:
            jsonschema.validators.validator_for(task.output_schema).check_schema(task.output_schema)
        except SchemaError as exc:
            raise AgentError(
                "INVALID_PARAMETER",
                f"outputSchema is not a valid JSON Schema: {exc.message}",
            ) from exc
        return task.output_schema
    if task.output_type == CSV:
        cell = {"type": ["string", "number", "boolean", "null"]}
        return {
            "type": "array",
            "description": "One object per CSV row.",
            "items": {
                "type": "object",
                "properties": {col: cell for col in csv_columns(task)},
            },
        }
    return {
        "type": "string",
        "description": "The answer for the user (markdown allowed).",
    }


def output_instructions(task: TaskSpec) -> str:
    """Return the sentence telling the model what `done` must carry."""
    if task.output_type == JSON:
        return "Call done with `result` as a JSON value matching this schema:\n" + json.dumps(task.output_schema)
    if task.output_type == CSV:
        return "Call done with `result` as a list of row objects with the keys: " + ", ".join(csv_columns(task))
    return "Call done with `result` as the answer text for the user."


def format_result(task: TaskSpec, result: Any) -> str:
    """Return the final message for `result`; raise StructuredOutputError when it does not fit."""
    if task.output_type == JSON:
        value = result
        if isinstance(result, str):
            try:
                value = json.loads(result)
            except json.JSONDecodeError as exc:
                raise StructuredOutputError(f"result is not valid JSON: {exc}") from exc
        validator = jsonschema.validators.validator_for(task.output_schema)(task.output_schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            raise StructuredOutputError(
                "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5])
            )
        return json.dumps(value, ensure_ascii=False)
    if task.output_type == CSV:
        return _to_csv(csv_columns(task), result)
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def _to_csv(columns: list[str], result: Any) -> str:
    rows: list[list[Any]]
    if isinstance(result, str):
        parsed = list(csv.reader(io.StringIO(result.strip())))
        if not parsed or [c.strip() for c in parsed[0]] != columns:
            raise StructuredOutputError(f"CSV text must start with the header row: {','.join(columns)}")
        rows = parsed[1:]
    elif isinstance(result, list):
        rows = []
        for item in result:
            if isinstance(item, dict):
                unknown = set(item) - set(columns)
                if unknown:
                    raise StructuredOutputError(f"unknown columns {sorted(unknown)}; use {columns}")
                rows.append([item.get(col, "") for col in columns])
            elif isinstance(item, list) and len(item) == len(columns):
                rows.append(item)
            else:
                raise StructuredOutputError(f"each row must be an object with the keys {columns}")
    else:
        raise StructuredOutputError("result must be a list of row objects")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    return buffer.getvalue()

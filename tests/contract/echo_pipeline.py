"""A one-step kfp pipeline for the schedule contract (no ``from __future__ import annotations``:
kfp reads the component's annotations as types, as in ``components/``)."""

from kfp import dsl


@dsl.component(base_image="python:3.12-slim")
def echo(text: str) -> str:
    return text


@dsl.pipeline(name="contract-echo")
def echo_pipeline(text: str = "hello") -> None:
    echo(text=text)

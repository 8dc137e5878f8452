# mypy: ignore-errors
# (fastapi is installed in the image, not in the project's environment)
"""The hello-world server of Cortex's AsyncAPI test (test/apis/async/hello-world), written anew for these tests."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/")
def hello_world() -> dict[str, str]:
    return {"message": "hello world"}

"""Drive a live /v2 API with the clients people use; print what each saw, as JSON.

Runs under the clients' own virtualenv (`.venv-clients`, made by `make test`: tritonclient and
the kserve SDK pin packages the project pins otherwise), as
`python tests/e2e/oip_clients.py BASE_URL [TOKEN]`; tests/e2e/test_inference_protocol_clients.py
asserts on the output. Only the clients' public APIs are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TEXTS = ["Python bindings for the GTK toolkit", "documentation for the GNU C library"]


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def with_tritonclient(base_url: str, headers: dict[str, str]) -> dict[str, Any]:
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=urlsplit(base_url).netloc)
    text = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array(TEXTS, dtype=object), binary_data=False)
    outputs = [
        triton.InferRequestedOutput("label", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=False, class_count=3),
    ]
    result = client.infer("default", [text], outputs=outputs, request_id="t-1", headers=headers)
    response = result.get_response()
    top = result.as_numpy("probabilities")
    try:
        client.infer("nope", [text], outputs=outputs[:1], headers=headers)
        unknown_model = "answered"
    except InferenceServerException as exc:
        unknown_model = str(exc.message())
    return {
        "live": client.is_server_live(headers=headers),
        "ready": client.is_server_ready(headers=headers),
        "model_ready": client.is_model_ready("default", headers=headers),
        "metadata": client.get_model_metadata("default", headers=headers),
        "server": client.get_server_metadata(headers=headers),
        "labels": [as_text(label) for label in result.as_numpy("label")],
        "top": [[as_text(cell) for cell in row] for row in top],
        "top_shape": list(top.shape),
        "model_version": response["model_version"],
        "id": response.get("id"),
        "unknown_model": unknown_model,
    }


async def with_kserve(base_url: str, headers: dict[str, str]) -> dict[str, Any]:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
    try:
        text = InferInput(name="text", shape=[len(TEXTS)], datatype="BYTES", data=TEXTS)
        request = InferRequest(model_name="default", infer_inputs=[text], request_id="k-1")
        response = await client.infer(base_url, request, model_name="default", headers=headers)
        outputs = {output.name: output for output in response.outputs}
        return {
            "live": await client.is_server_live(base_url, headers=headers),
            "ready": await client.is_server_ready(base_url, headers=headers),
            "model_ready": await client.is_model_ready(base_url, "default", headers=headers),
            "labels": [as_text(label) for label in outputs["label"].data],
            "probabilities_shape": list(outputs["probabilities"].shape),
            "model_name": response.model_name,  # the SDK keeps no model_version from REST
            "id": response.id,
        }
    finally:
        await client.close()


def readme_example(base_url: str, token: str) -> list[str]:
    """Run the README's tritonclient example as a user would paste it; what it printed."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python\n", readme.index("With tritonclient")) + len("```python\n")
    code = readme[start : readme.index("```", start)]
    code = code.replace("localhost:8000", urlsplit(base_url).netloc)
    os.environ["TOKEN"] = token
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    return printed.getvalue().splitlines()


def main() -> None:
    base_url = sys.argv[1]
    token = sys.argv[2] if len(sys.argv) > 2 else ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    results = {
        "tritonclient": with_tritonclient(base_url, headers),
        "kserve": asyncio.run(with_kserve(base_url, headers)),
        "readme": readme_example(base_url, token),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""AI Hub with a fake client: the exact compile, link and profile calls and options, the measured numbers in the
record; and a clean skip, with the reason, when the service has no token or cannot be reached."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from neocompress.targets.hexagon.aihub import COMPILE_OPTIONS, NO_TOKEN, submit_to_aihub
from neocompress.targets.hexagon.devices import device_profile


class _UserError(Exception):
    pass


class _InternalError(Exception):
    pass


class FakeHub:
    """Records every call; jobs complete at once with a fixed profile."""

    UserError, InternalError = _UserError, _InternalError

    def __init__(self, fail: Exception | None = None):
        self.fail, self.calls, self.n = fail, [], 0

    def _job(self, kind: str, **kw):
        self.n += 1
        self.calls.append((kind, kw))
        job_id = f"j{self.n}"
        profile = {"execution_summary": {"estimated_inference_time": 1500 * self.n, "estimated_inference_peak_memory":
                                         2**20 * self.n}}  # fmt: skip
        return SimpleNamespace(job_id=job_id, get_target_model=lambda: f"model-{job_id}",
                               download_profile=lambda: profile)  # fmt: skip

    def get_devices(self, name: str):
        if self.fail is not None:
            raise self.fail
        self.calls.append(("get_devices", {"name": name}))
        return [name]

    def Device(self, name: str):  # noqa: N802 - the client's own spelling
        return ("device", name)

    def submit_compile_job(self, **kw):
        return self._job("compile", **kw)

    def submit_link_job(self, **kw):
        return self._job("link", **kw)

    def submit_profile_job(self, **kw):
        return self._job("profile", **kw)


def _manifest() -> dict:
    def parts(stage: int) -> list[dict]:
        return [{"name": f"denoiser_stage{stage}_part_{j}_of_2", "aimet": f"aimet/s{stage}p{j}.aimet"} for j in (1, 2)]

    comps = {"t5": {"kind": "text_encoder", "parts": [{"name": "t5"}]}}
    comps.update({f"denoiser_stage{s}": {"kind": "denoiser", "parts": parts(s)} for s in range(3)})
    return {"components": comps}


def test_every_part_is_compiled_the_stages_linked_and_each_profiled(tmp_path: Path) -> None:
    hub = FakeHub()
    device = device_profile("snapdragon-8-elite")
    record = submit_to_aihub(_manifest(), tmp_path, device, client=hub)
    assert hub.calls[0] == ("get_devices", {"name": "Snapdragon 8 Elite QRD"})
    compiles = [kw for kind, kw in hub.calls if kind == "compile"]
    assert [Path(kw["model"]).relative_to(tmp_path).as_posix() for kw in compiles] == [
        "graphs/t5.onnx", *(f"aimet/s{s}p{j}.aimet" for s in range(3) for j in (1, 2))]  # fmt: skip
    assert all(kw["options"] == COMPILE_OPTIONS and kw["device"] == ("device", "Snapdragon 8 Elite QRD")
               for kw in compiles)  # fmt: skip
    links = [kw for kind, kw in hub.calls if kind == "link"]
    assert len(links) == 2  # part j of the three stages share their weights
    assert links[0]["models"] == [f"model-j{2 + 2 * s}" for s in range(3)]  # part 1 of stages 0, 1, 2
    assert [kw["model"] for kind, kw in hub.calls if kind == "profile"] == [f"model-j{i}" for i in range(1, 8)]
    assert record["status"] == "submitted" and set(record["compile_jobs"]) == set(record["profile_jobs"])
    assert record["measured"]["t5"]["latency_ms"] > 0 and len(record["measured"]) == 7


def test_without_waiting_only_the_compile_jobs_are_submitted(tmp_path: Path) -> None:
    hub = FakeHub()
    record = submit_to_aihub(_manifest(), tmp_path, device_profile("snapdragon-x-elite"), client=hub, wait=False)
    assert {kind for kind, _ in hub.calls} == {"get_devices", "compile"} and "not waited" in record["status"]


def test_no_token_or_no_network_skips_with_the_reason_and_submits_nothing(tmp_path: Path) -> None:
    for error, reason in ((_UserError("client.ini not found"), NO_TOKEN), (_InternalError("timeout"), "reached")):
        hub = FakeHub(fail=error)
        record = submit_to_aihub(_manifest(), tmp_path, device_profile("snapdragon-8-elite"), client=hub)
        assert record["status"] == "skipped" and reason in record["reason"] and hub.calls == []


def test_the_real_client_without_a_token_skips_cleanly(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "missing.ini"))
    record = submit_to_aihub(_manifest(), tmp_path, device_profile("snapdragon-8-elite"))
    assert record["status"] == "skipped" and record["reason"] == NO_TOKEN

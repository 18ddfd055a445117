"""Argument handling with no server: --param parsing, role flags over settings, default targets."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import trustme
from google.protobuf import json_format

import mediagen
from mediagen import cli
from mediagen.client import ParameterError, parameters_from_mapping, parse_params
from mediagen.config import Settings
from mediagen.tls import ClientTLS
from mediagen.v1 import job_pb2


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MEDIAGEN_TARGET",
        "MEDIAGEN_HOST",
        "MEDIAGEN_GRPC_PORT",
        "MEDIAGEN_HTTP_PORT",
        "MEDIAGEN_PUBLIC_URL",
        "MEDIAGEN_DATA_DIR",
        "MEDIAGEN_EMULATOR_PORT",
    ):
        monkeypatch.delenv(name, raising=False)


def _json(params: job_pb2.GenerationParameters) -> dict[str, object]:
    return json_format.MessageToDict(params, preserving_proto_field_name=True)


# -- --param


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], {}),
        (["width=512", "height= 768 "], {"width": 512, "height": 768}),
        (
            ["num_outputs=4", "num_inference_steps=30"],
            {"num_outputs": 4, "num_inference_steps": 30},
        ),
        (["seed=4294967295"], {"seed": "4294967295"}),  # int64 is a string in proto-JSON
        (["guidance_scale=7.5"], {"guidance_scale": 7.5}),
        (["guidance_scale=7"], {"guidance_scale": 7.0}),
        (["negative_prompt=blurry, dark"], {"negative_prompt": "blurry, dark"}),
        (["negative_prompt=1=2"], {"negative_prompt": "1=2"}),  # only the first = splits
        (["negative_prompt=true"], {"negative_prompt": "true"}),  # typed: stays text
        (["output_format=png"], {"output_format": "OUTPUT_FORMAT_PNG"}),
        (["output_format=JPG"], {"output_format": "OUTPUT_FORMAT_JPEG"}),
        (["output_format=jpeg"], {"output_format": "OUTPUT_FORMAT_JPEG"}),
        (["output_format=webp"], {"output_format": "OUTPUT_FORMAT_WEBP"}),
        (["lora_scale=0.6"], {"extra_input": {"lora_scale": 0.6}}),
        (["refine_steps=10"], {"extra_input": {"refine_steps": 10}}),
        (["hdr=true", "tile=false"], {"extra_input": {"hdr": True, "tile": False}}),
        (["style=anime"], {"extra_input": {"style": "anime"}}),
        (["style="], {"extra_input": {"style": ""}}),
        (["mask=null"], {"extra_input": {"mask": None}}),
        (["scales=[0.5, 1]"], {"extra_input": {"scales": [0.5, 1]}}),
        (['lora={"a": 1}'], {"extra_input": {"lora": {"a": 1}}}),
        (["x=NaN", "y=1e999"], {"extra_input": {"x": "NaN", "y": "1e999"}}),
        (['quoted="42"'], {"extra_input": {"quoted": "42"}}),
    ],
)
def test_parse_params(items: list[str], expected: dict[str, object]) -> None:
    assert _json(parse_params(items)) == expected


@pytest.mark.parametrize(
    ("items", "key", "problem"),
    [
        (["width=wide"], "width", "expected an integer, got 'wide'"),
        (["width=5.5"], "width", "expected an integer, got '5.5'"),
        (["height="], "height", "expected an integer, got ''"),
        (["width=99999999999"], "width", "99999999999 is out of range"),
        (["seed=-1" + "0" * 20], "seed", "is out of range"),
        (["guidance_scale=lots"], "guidance_scale", "expected a number, got 'lots'"),
        (["guidance_scale=inf"], "guidance_scale", "expected a number, got 'inf'"),
        (["output_format=gif"], "output_format", "expected one of png, jpeg, jpg, webp, got 'gif'"),
        (["width=1", "width=2"], "width", "given more than once"),
        (["novalue"], "", "expected KEY=VALUE, got 'novalue'"),
        (["=5"], "", "expected KEY=VALUE, got '=5'"),
    ],
)
def test_parse_params_errors_name_the_key(items: list[str], key: str, problem: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_params(items)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"width": 512, "guidance_scale": 3}, {"width": 512, "guidance_scale": 3.0}),
        ({"extra": {"nested": [1, "a"]}}, {"extra_input": {"extra": {"nested": [1, "a"]}}}),
        ({"extra": "true"}, {"extra_input": {"extra": "true"}}),  # mapping values pass as given
    ],
)
def test_parameters_from_mapping(values: dict[str, object], expected: dict[str, object]) -> None:
    assert _json(parameters_from_mapping(values)) == expected


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"width": True}, "width"),
        ({"negative_prompt": 3}, "negative_prompt"),
        ({"output_format": 1}, "output_format"),
        ({"extra": object()}, "extra"),
    ],
)
def test_parameters_from_mapping_rejects_wrong_types(values: dict[str, object], key: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parameters_from_mapping(values)
    assert caught.value.key == key


# -- service roles: flags over environment over defaults


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Settings, str | None]]:
    """Stand in for `mediagen.roles`; record which role the CLI started, and with what.

    A stand-in module rather than patched attributes: these tests check the CLI's side of the
    seam and should not need the server stack to import.
    """
    calls: list[tuple[str, Settings, str | None]] = []

    def fake(name: str):
        async def role(
            settings: Settings, grpc_target: str | None = None, upstream_tls: object = None
        ) -> None:
            calls.append((name, settings, grpc_target))
            stand_in.upstream_tls = upstream_tls  # type: ignore[attr-defined]

        return role

    stand_in = types.ModuleType("mediagen.roles")
    for name in ("serve", "api", "worker", "gateway", "scheduler", "migrate", "emulator"):
        setattr(stand_in, name, fake(name))
    stand_in.configure_logging = lambda settings: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mediagen.roles", stand_in)
    monkeypatch.setattr(mediagen, "roles", stand_in, raising=False)
    return calls


def test_serve_flags_override_settings(started, tmp_path: Path) -> None:
    argv = ["serve", "--host", "0.0.0.0", "--grpc-port", "6000", "--http-port", "9000"]
    assert cli.main([*argv, "--data-dir", str(tmp_path)]) == cli.EXIT_OK

    ((name, settings, _),) = started
    assert name == "serve"
    assert (settings.host, settings.grpc_port, settings.http_port) == ("0.0.0.0", 6000, 9000)
    assert settings.data_dir == tmp_path


def test_serve_without_flags_keeps_environment_and_defaults(started, monkeypatch) -> None:
    monkeypatch.setenv("MEDIAGEN_GRPC_PORT", "7000")

    assert cli.main(["serve"]) == cli.EXIT_OK

    settings = started[0][1]
    assert settings.grpc_port == 7000
    assert (settings.host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path(".mediagen")


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["api", "--grpc-port", "6001"], "grpc_port", 6001),
        (["worker", "--data-dir", "/srv/m"], "data_dir", Path("/srv/m")),
        (["scheduler", "--data-dir", "/srv/m"], "data_dir", Path("/srv/m")),
        (["migrate", "--data-dir", "/srv/m"], "data_dir", Path("/srv/m")),
        (["emulator", "--port", "7777"], "emulator_port", 7777),
        (["gateway", "--http-port", "8081"], "http_port", 8081),
    ],
)
def test_each_role_gets_its_flags(started, argv, field, value) -> None:
    assert cli.main(argv) == cli.EXIT_OK
    ((name, settings, _),) = started
    assert name == argv[0]
    assert getattr(settings, field) == value


def test_gateway_target_from_flag_then_global_target_then_default(started) -> None:
    cli.main(["gateway", "--grpc-target", "api:1"])
    cli.main(["--target", "api:2", "gateway"])
    cli.main(["gateway"])
    assert [target for _, _, target in started] == ["api:1", "api:2", "127.0.0.1:50051"]


def test_gateway_reaches_its_api_with_the_tls_flags(started, tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(trustme.CA().cert_pem.bytes().decode())
    cli.main(["gateway", "--grpc-target", "api:1"])
    assert mediagen.roles.upstream_tls is None  # type: ignore[attr-defined]
    cli.main(["gateway", "--grpc-target", "api:1", "--ca", str(ca)])
    assert mediagen.roles.upstream_tls == ClientTLS(ca=ca)  # type: ignore[attr-defined]


@pytest.mark.parametrize("argv", [["serve", "--grpc-port", "70000"], ["api", "--grpc-port", "x"]])
def test_bad_ports_are_usage_errors(started, argv, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == cli.EXIT_USAGE
    assert "port" in capsys.readouterr().err
    assert started == []


def test_configuration_errors_are_one_line(started, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MEDIAGEN_HTTP_PORT", "eighty")

    assert cli.main(["serve"]) == cli.EXIT_USAGE

    err = capsys.readouterr().err
    assert (
        err
        == "mediagen: error: configuration: MEDIAGEN_HTTP_PORT must be an integer, got 'eighty'\n"
    )
    assert started == []


# -- where the client commands connect


@pytest.mark.parametrize(
    ("env", "target", "http_url"),
    [
        ({}, "127.0.0.1:50051", "http://127.0.0.1:8080"),
        (
            {"MEDIAGEN_GRPC_PORT": "6000", "MEDIAGEN_HTTP_PORT": "9000"},
            "127.0.0.1:6000",
            "http://127.0.0.1:9000",
        ),
        ({"MEDIAGEN_TARGET": "api.internal:443"}, "api.internal:443", "http://api.internal:8080"),
        (
            {"MEDIAGEN_PUBLIC_URL": "https://media.example"},
            "127.0.0.1:50051",
            "https://media.example",
        ),
        ({"MEDIAGEN_TARGET": "dns:///api:50051"}, "dns:///api:50051", None),
    ],
)
def test_default_target_and_http_url(monkeypatch, env, target, http_url) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.default_target() == target
    assert cli.default_http_url(target) == http_url


def test_client_options_after_the_command_win() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["--target", "a:1", "jobs", "get", "x", "--target", "b:2"])
    defaults = parser.parse_args(["--target", "a:1", "--timeout", "5", "jobs", "get", "x"])
    assert args.target == "b:2"
    assert (defaults.target, defaults.timeout, defaults.http_url) == ("a:1", 5.0, None)


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mediagen", "--help"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("usage: mediagen ")
    for command in ("serve", "generate", "jobs", "media", "gateway", "migrate", "emulator"):
        assert command in result.stdout

"""The initserve command: generate writes what the API serves; errors exit 2 with the field named."""

from __future__ import annotations

from service.cli import main


def test_generate_writes_the_same_bytes_as_the_api(client, tmp_path):
    out = tmp_path / "w.safetensors"
    assert (
        main(
            [
                "generate",
                "--shape",
                "16",
                "8",
                "--scheme",
                "kaiming_normal",
                "-p",
                "mode=fan_out",
                "-p",
                "a=0.1",
                "--seed",
                "7",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    body = {"shape": [16, 8], "scheme": "kaiming_normal", "mode": "fan_out", "a": 0.1, "seed": 7}
    assert out.read_bytes() == client.post("/init", json=body).content


def test_generate_takes_the_rng(client, tmp_path):
    out = tmp_path / "w.npy"
    argv = ["generate", "--shape", "5", "7", "--scheme", "normal", "--seed", "3", "--rng", "torch-2.13", "-o", str(out)]
    assert main(argv) == 0
    body = {"shape": [5, 7], "scheme": "normal", "seed": 3, "rng": "torch-2.13", "format": "npy"}
    assert out.read_bytes() == client.post("/init", json=body).content
    assert out.read_bytes() != client.post("/init", json={**body, "rng": "philox-v1"}).content


def test_generate_picks_format_from_extension(client, tmp_path):
    out = tmp_path / "w.npy"
    assert main(["generate", "--shape", "4", "--scheme", "ones", "--seed", "1", "-o", str(out)]) == 0
    assert (
        out.read_bytes()
        == client.post("/init", json={"shape": [4], "scheme": "ones", "seed": 1, "format": "npy"}).content
    )


def test_generate_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    assert main(["generate", "--shape", "4", "--scheme", "xavier_normal", "--seed", "1", "-o", str(out)]) == 2
    assert "Fan in and fan out can not be computed" in capsys.readouterr().err
    assert (
        main(["generate", "--shape", "4", "4", "--scheme", "normal", "-p", "gain=2", "--seed", "1", "-o", str(out)])
        == 2
    )
    assert "gain" in capsys.readouterr().err
    assert not out.exists()

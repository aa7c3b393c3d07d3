"""Regenerate src/gelato/wire/proto/gelato_pb2*.py from gelato.proto (needs grpcio-tools: pip install -e '.[dev]')."""

from pathlib import Path

from grpc_tools import protoc

root = Path(__file__).resolve().parent.parent / "src"
proto = "gelato/wire/proto/gelato.proto"
code = protoc.main(["grpc_tools.protoc", f"-I{root}", f"--python_out={root}", f"--pyi_out={root}",
                    f"--grpc_python_out={root}", str(root / proto)])
if code != 0:
    raise SystemExit(f"protoc failed with exit code {code}")
print(f"generated Python code for {proto}")

"""initserve's Python client: reproducible weight tensors as NumPy arrays (or torch tensors), `generate` to compute
a philox-v1 tensor locally, bit for bit, and `init_module` to fill a torch.nn.Module's parameters in one request."""

from initserve_client.client import Client, fetch_tensor, fetch_tensors
from initserve_client.decode import Tensor, Tensors
from initserve_client.errors import FormatError, InitserveError, RequestError, ServiceError, UnsupportedModuleError
from initserve_client.generation import generate
from initserve_client.torch_init import init_module, supported_types

__version__ = "0.1.0"

__all__ = [
    "Client",
    "FormatError",
    "InitserveError",
    "RequestError",
    "ServiceError",
    "Tensor",
    "Tensors",
    "UnsupportedModuleError",
    "fetch_tensor",
    "fetch_tensors",
    "generate",
    "init_module",
    "supported_types",
]

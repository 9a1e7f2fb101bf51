# SPDX-License-Identifier: Apache-2.0
"""V2 datatypes and their numpy dtypes: one table the converter and the server share."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from inferplane import errors
from inferplane.api.tensors import Datatype, TensorSpec
from inferplane.convert import verify
from inferplane.serving import codecs


@pytest.mark.parametrize("datatype", list(Datatype))
def test_each_datatype_has_one_numpy_dtype_both_planes_agree_on(datatype: Datatype) -> None:
    assert np.zeros(2, datatype.numpy).dtype == datatype.numpy
    assert codecs.DTYPES[datatype.value] == datatype.numpy
    if datatype is Datatype.BYTES:
        with pytest.raises(errors.ConversionError, match="no V2 datatype"):
            verify.datatype_of(datatype.numpy)
    else:
        assert verify.datatype_of(datatype.numpy) is datatype


def test_the_api_models_do_not_import_numpy() -> None:
    """The CRD generator and the CLI load the API without the numeric stack."""
    code = "import sys, inferplane.api.v1alpha1; assert 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_signature_text_round_trips() -> None:
    spec = TensorSpec.parse("x:-1,1,32,32:fp32")
    assert str(spec) == "x:-1,1,32,32:FP32"
    assert TensorSpec.parse(str(spec)) == spec

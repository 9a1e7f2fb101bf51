# SPDX-License-Identifier: Apache-2.0
from inferplane.cli import main

main()

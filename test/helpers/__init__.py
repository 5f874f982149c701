# SPDX-License-Identifier: Apache-2.0
"""Programs and data that tests run in other processes."""

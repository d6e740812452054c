################################################################################
#
# python-pyrfc3339
#
################################################################################

PYTHON_PYRFC3339_VERSION = 2.1.1
PYTHON_PYRFC3339_SOURCE = pyrfc3339-$(PYTHON_PYRFC3339_VERSION).tar.gz
PYTHON_PYRFC3339_SITE = https://files.pythonhosted.org/packages/source/p/pyrfc3339
PYTHON_PYRFC3339_SETUP_TYPE = setuptools
# pyproject.toml: requires = ["setuptools>=64", "setuptools_scm>=8"]
PYTHON_PYRFC3339_DEPENDENCIES = host-python-setuptools-scm
PYTHON_PYRFC3339_LICENSE = MIT
PYTHON_PYRFC3339_LICENSE_FILES = LICENSE.txt

$(eval $(python-package))

################################################################################
#
# python-dkimpy
#
################################################################################

PYTHON_DKIMPY_VERSION = 1.1.8
PYTHON_DKIMPY_SOURCE = dkimpy-$(PYTHON_DKIMPY_VERSION).tar.gz
PYTHON_DKIMPY_SITE = https://files.pythonhosted.org/packages/source/d/dkimpy
PYTHON_DKIMPY_SETUP_TYPE = setuptools
PYTHON_DKIMPY_LICENSE = Zlib
PYTHON_DKIMPY_LICENSE_FILES = LICENSE

$(eval $(python-package))

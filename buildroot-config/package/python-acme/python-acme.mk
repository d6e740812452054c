################################################################################
#
# python-acme
#
################################################################################

PYTHON_ACME_VERSION = 5.7.0
PYTHON_ACME_SOURCE = acme-$(PYTHON_ACME_VERSION).tar.gz
PYTHON_ACME_SITE = https://files.pythonhosted.org/packages/source/a/acme
PYTHON_ACME_SETUP_TYPE = setuptools
PYTHON_ACME_LICENSE = Apache-2.0
PYTHON_ACME_LICENSE_FILES = LICENSE.txt

$(eval $(python-package))

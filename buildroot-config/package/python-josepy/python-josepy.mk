################################################################################
#
# python-josepy
#
################################################################################

PYTHON_JOSEPY_VERSION = 2.2.0
PYTHON_JOSEPY_SOURCE = josepy-$(PYTHON_JOSEPY_VERSION).tar.gz
PYTHON_JOSEPY_SITE = https://files.pythonhosted.org/packages/source/j/josepy
PYTHON_JOSEPY_SETUP_TYPE = poetry
PYTHON_JOSEPY_LICENSE = Apache-2.0
PYTHON_JOSEPY_LICENSE_FILES = LICENSE.txt

$(eval $(python-package))

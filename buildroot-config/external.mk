include $(sort $(wildcard $(BR2_EXTERNAL_CHATMAIL_PATH)/package/*/*.mk))

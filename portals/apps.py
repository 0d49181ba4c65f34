from django.apps import AppConfig


class PortalsConfig(AppConfig):
    name = "portals"
    verbose_name = "Bitrix24 portals and tokens"

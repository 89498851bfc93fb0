"""Dagster resources: the warehouse and the source, configured from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa

from hisx.config import Settings
from hisx.connectors.warehouse import Warehouse
from hisx.pipelines.flow import Tenant, discover_tenants, ensure_warehouse


class HisxResource(dg.ConfigurableResource):
    """Where the source and the warehouse are. Empty fields fall back to the environment."""

    warehouse_url: str = ""
    source_url: str = ""
    source_name: str = "his"

    def settings(self) -> Settings:
        s = Settings.from_env()
        return Settings(
            home=s.home,
            warehouse_url=self.warehouse_url or s.warehouse_url,
            source_url=self.source_url or s.source_url,
            sources_file=s.sources_file,
            feed_bootstrap=s.feed_bootstrap,
        )

    @contextmanager
    def warehouse(self) -> Iterator[Warehouse]:
        wh = Warehouse.from_url(self.settings().warehouse_url)
        try:
            ensure_warehouse(wh)
            yield wh
        finally:
            wh.close()

    def source_engine(self) -> sa.Engine:
        return sa.create_engine(self.settings().source_url)

    def tenants(self) -> list[Tenant]:
        engine = self.source_engine()
        try:
            return discover_tenants(engine)
        finally:
            engine.dispose()

"""SQL subscriptions: live query results pushed as rows change (Corrosion's subscriptions, made
exact for subqueries, EXISTS, LEFT JOINs, aggregates and ORDER BY/LIMIT). The events are the
API's own (`corrosion_py.api_types`): the same classes the HTTP clients yield."""

from corrosion_py.api_types import Change, Columns, EndOfQuery, Event, Notify, Row
from corrosion_py.subs.errors import (
    ChangesTooOld,
    NoSuchSubscription,
    SubscriberLagged,
    SubscriptionClosed,
    SubscriptionError,
)
from corrosion_py.subs.manager import SubsConfig, Subscription, SubscriptionManager
from corrosion_py.subs.plan import Plan, SubscriptionSqlError, plan

__all__ = [
    "Change",
    "ChangesTooOld",
    "Columns",
    "EndOfQuery",
    "Event",
    "NoSuchSubscription",
    "Notify",
    "Plan",
    "Row",
    "SubsConfig",
    "SubscriberLagged",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionError",
    "SubscriptionManager",
    "SubscriptionSqlError",
    "plan",
]

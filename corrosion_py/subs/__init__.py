"""SQL subscriptions: live query results pushed as rows change (Corrosion's subscriptions, made
exact for subqueries, EXISTS, LEFT JOINs, aggregates and ORDER BY/LIMIT)."""

from corrosion_py.subs.events import (
    Change,
    ChangesTooOld,
    Columns,
    EndOfQuery,
    Event,
    NoSuchSubscription,
    Notify,
    Row,
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

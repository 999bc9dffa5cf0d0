"""Constants of the synthetic generator other than the personas.

Catalogue, channels, seasonality, campaign and return settings, and the name, address
and review phrase tables that customers and reviews are assembled from.
"""

from __future__ import annotations

import numpy as np

CATEGORIES = (
    "electronics", "fashion", "home", "beauty", "grocery",
    "sports", "toys", "books", "garden", "health",
)  # fmt: skip
#: price level of a category relative to the customer's typical order value
CATEGORY_PRICE = np.array([2.2, 1.1, 1.3, 0.7, 0.5, 1.1, 0.8, 0.45, 1.0, 0.7])
#: base popularity of each category (Dirichlet mean of customer preferences)
CATEGORY_POPULARITY = np.array([0.12, 0.16, 0.12, 0.10, 0.14, 0.09, 0.06, 0.07, 0.06, 0.08])
CATEGORY_CONCENTRATION = 4.0  # Dirichlet alpha sum; lower = customers focus on fewer categories
CHANNELS = ("web", "app", "store")
CHANNEL_CONCENTRATION = 6.0  # Dirichlet alpha sum around the persona's channel mix
#: relative purchase rate by weekday, Monday first
WEEKDAY_FACTOR = np.array([0.92, 0.90, 0.95, 1.00, 1.08, 1.15, 1.00])
#: relative purchase rate by month, January first (November/December peak)
MONTH_FACTOR = np.array([0.85, 0.82, 0.92, 0.95, 1.0, 0.95, 0.90, 0.95, 1.0, 1.05, 1.35, 1.55])
#: activity by hour of day (purchases and browsing)
HOUR_WEIGHTS = np.array(
    [0.6, 0.3, 0.2, 0.15, 0.15, 0.3, 0.8, 1.6, 2.6, 3.4, 4.0, 4.6,
     5.2, 5.0, 4.6, 4.4, 4.6, 5.0, 5.6, 6.4, 6.8, 5.8, 3.8, 1.8]
)  # fmt: skip
HOUR_CDF = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()
#: lognormal sigma of a customer's typical order value around the persona's
AOV_CUSTOMER_SIGMA = 0.1
#: dead customers still browse occasionally, at this fraction of their rate
POST_DEATH_BROWSE = 0.05
#: engagement decays linearly over this many days before dropout
PRE_DEATH_DECAY_DAYS = 120.0
#: share of web/app purchases that come with a logged session event
PURCHASE_SESSION_PROB = 0.45
CAMPAIGN_SEND_PROB = 0.16  # per month, per consenting customer
CAMPAIGN_CHANNELS = ("email", "sms", "push")
CAMPAIGN_CHANNEL_P = np.array([0.6, 0.2, 0.2])
CAMPAIGN_HOUR = np.array([10, 12, 18])  # send hour per channel
RETURN_DAYS = (2, 30)
REVIEW_DELAY_DAYS = (1, 21)
MAX_TX_PER_CUSTOMER = 100_000  # transaction_id = customer_id * this + sequence
RATE_MULTIPLIER_CAP = 6.0
GENDERS = ("F", "M", "X")
GENDER_P = np.array([0.49, 0.48, 0.03])
#: default window (days before end_date) of the extra dropouts planted by ``bias``
BIAS_WINDOW_DAYS = 180

REGIONS = (
    "North", "South", "East", "West", "Central",
    "Northeast", "Southwest", "Coastal",
)  # fmt: skip
REGION_P = np.array([0.14, 0.16, 0.13, 0.15, 0.12, 0.11, 0.09, 0.10])
REGION_CITIES = (
    ("Northfield", "Lakeview"), ("Riverton", "Southport"), ("Easton", "Brookhaven"),
    ("Westbury", "Sunset Hills"), ("Midvale", "Centerville"), ("Pinecrest", "Maple Falls"),
    ("Red Rock", "Dry Creek"), ("Bayside", "Harborview"),
)  # fmt: skip
FIRST_NAMES_F = (
    "Emma", "Olivia", "Sophia", "Ava", "Mia", "Isabella", "Amelia", "Harper", "Chloe",
    "Laura", "Anna", "Maria", "Sarah", "Julia", "Lena", "Nora", "Elena", "Grace",
)  # fmt: skip
FIRST_NAMES_M = (
    "Liam", "Noah", "Oliver", "James", "Lucas", "Henry", "Leo", "Daniel", "Samuel",
    "David", "Thomas", "Michael", "Adam", "Jonas", "Felix", "Marco", "Ethan", "Paul",
)  # fmt: skip
FIRST_NAMES_X = ("Alex", "Sam", "Robin", "Charlie", "Jordan", "Taylor", "Kim", "Riley")
LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Martinez", "Lopez",
    "Wilson", "Anderson", "Taylor", "Moore", "Martin", "Lee", "Walker", "Hall",
    "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill",
    "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner",
    "Schmidt", "Novak", "Rossi", "Dubois", "Silva", "Kowalski", "Jensen", "Murphy",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
STREETS = ("Oak", "Maple", "Cedar", "Elm", "Pine", "Lake", "Hill", "Park", "Mill", "River")
STREET_SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Drive", "Way")

# Review phrases, indexed by rating 1..5 (row 0 = rating 1). Sentiment lives in the words.
REVIEW_OPENERS = (
    ("Terrible experience.", "Awful, very disappointed.", "Complete waste of money.",
     "Worst purchase ever.", "Horrible quality."),
    ("Disappointed.", "Not great.", "Below expectations.", "Poor value for money.",
     "Rather unhappy with this order."),
    ("It is okay.", "Average experience.", "Decent, nothing special.",
     "Mixed feelings about this one.", "Acceptable."),
    ("Very good overall.", "Happy with this purchase.", "Good quality for the price.",
     "Nice product.", "Pleased with my order."),
    ("Absolutely love it!", "Fantastic purchase.", "Excellent quality, very happy.",
     "Best order I have made in a while.", "Great value and fast delivery."),
)  # fmt: skip
REVIEW_QUALITY = (
    ("broke on the first day.", "is defective and useless.", "never worked properly.",
     "was the wrong item and support ignored me.", "fell apart immediately."),
    ("stopped working after a week.", "feels flimsy and cheap.",
     "does not match the description.", "arrived damaged.", "is poorly made."),
    ("is fine for everyday use.", "is average.", "works but feels a bit cheap.",
     "is as expected, no more.", "arrived a little late but works."),
    ("works well.", "is solid and well made.", "does the job nicely.",
     "looks good and fits well.", "is good, with a minor flaw."),
    ("works perfectly.", "exceeded my expectations.", "is beautifully made.",
     "is exactly as described and feels premium.", "is wonderful and arrived early."),
)  # fmt: skip
REVIEW_CLOSERS = (
    ("I want a refund.", "Never ordering again.", "Avoid this shop.", "Returned it.", ""),
    ("Probably will not order again.", "Customer service was slow.", "Expected better.",
     "", ""),
    ("Might buy again.", "Not sure yet.", "", "", ""),
    ("Would recommend.", "Would buy again.", "Good service.", "", ""),
    ("Highly recommend!", "Will definitely buy again.", "Five stars.", "Thank you!", ""),
)  # fmt: skip
CATEGORY_ITEMS = (
    ("pair of headphones", "charger", "speaker"), ("jacket", "pair of jeans", "dress"),
    ("lamp", "cushion set", "kettle"), ("face cream", "perfume", "shampoo"),
    ("coffee", "olive oil", "tea selection"),
    ("pair of running shoes", "yoga mat", "water bottle"),
    ("puzzle", "board game", "toy car"), ("novel", "cookbook", "notebook"),
    ("hose", "plant pot", "garden chair"), ("vitamin pack", "thermometer", "first aid kit"),
)  # fmt: skip


def _check_constants() -> None:
    """Fail at import if the tables above were edited inconsistently."""
    for rows in (REVIEW_OPENERS, REVIEW_QUALITY, REVIEW_CLOSERS, CATEGORY_ITEMS, REGION_CITIES):
        if len({len(r) for r in rows}) != 1:
            raise ValueError("phrase tables need rows of equal length")
    if not len(REVIEW_OPENERS) == len(REVIEW_QUALITY) == len(REVIEW_CLOSERS) == 5:
        raise ValueError("review phrase tables need one row per rating 1..5")
    if (
        not len(CATEGORY_ITEMS)
        == len(CATEGORIES)
        == CATEGORY_PRICE.size
        == CATEGORY_POPULARITY.size
    ):
        raise ValueError("category tables differ in length")
    if not len(REGION_CITIES) == len(REGIONS) == REGION_P.size:
        raise ValueError("region tables differ in length")


_check_constants()

DAY_S = 86_400  # seconds per day
US = 1_000_000  # microseconds per second

"""Shared layers: the one :mod:`~zoo.layers.downsample` factory and the common blocks."""
from zoo.layers.downsample import CHOICES, Choice, Site, SitePlan, conv_site, pool_site, resolve_choices, sites_table
from zoo.layers.ops import BlurPool2D, ChannelGroupSum, SpaceToDepth, ZeroChannelPad

__all__ = [
    "CHOICES", "Choice", "Site", "SitePlan", "conv_site", "pool_site", "resolve_choices", "sites_table",
    "BlurPool2D", "ChannelGroupSum", "SpaceToDepth", "ZeroChannelPad",
]

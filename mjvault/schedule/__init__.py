"""Scheduled syncs: one vault's `mjvault sync` run by the platform's own scheduler.

:mod:`plan` says what runs and how often; :mod:`systemd`, :mod:`cron`, :mod:`launchd` and
:mod:`windows` each write and load it; :mod:`manage` picks the scheduler; every external
command goes through :mod:`runner`.
"""

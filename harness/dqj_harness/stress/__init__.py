"""The stress and chaos suite: real Odoo servers, driven from outside."""

"""Who may call spendguard: API tokens and their scopes (`tokens`)."""

"""Stage 4, approval: the request an approver receives, the reply read as commands, the decisions, reminders and answers."""

def stream_monitor():
    print("stub")

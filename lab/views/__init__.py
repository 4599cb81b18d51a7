"""What each Streamlit page computes, one module per page, named after it."""
